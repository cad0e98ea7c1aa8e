"""What people decide enters the journal too: the county's own stream of entries.

A receipt, an inspection, a stocktake (and later an alert's acknowledgement) is an event of a
reserved agent, ``county``, journaled through the same ingest path as an agent's events: the
same numbering, storage as entered, projections and hash chain. So the journal alone rebuilds
everything, and the county's entries are as tamper-evident as the agents'. The agent id is
reserved: ingest refuses it from the broker, and refuses entry kinds from any real agent.

Entry models belong to their domains (``server.ledger.entries``); this module only collects
them, as ``default_projections`` collects the projections.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import BaseModel, create_model

from edge_agent.wire import EVENT_MODELS, EventBase

COUNTY_AGENT = "county"
COUNTY_SITE = "county"
#: The county stream's epoch: fixed, as the server's numbering never restarts.
COUNTY_EPOCH = "c0c0c0c0c0c0c0c0"
COUNTY_BOOT = "server"


@cache
def entry_models() -> dict[str, type[BaseModel]]:
    """Event models of every entry kind: the envelope with the domain's payload."""
    from server.alerts.entries import KINDS as ALERT_KINDS
    from server.ledger.entries import KINDS as LEDGER_KINDS

    models: dict[str, type[BaseModel]] = {}
    for kind, payload in {**LEDGER_KINDS, **ALERT_KINDS}.items():
        name = "".join(part.title() for part in kind.replace(".", "_").split("_")) + "Event"
        models[kind] = create_model(
            name,
            __base__=EventBase,
            kind=(Literal[kind], ...),  # type: ignore[arg-type]
            payload=(payload, ...),
        )
    return models


@cache
def server_models() -> dict[str, type[BaseModel]]:
    """What this server understands in its journal: agents' events and the county's entries."""
    return {**EVENT_MODELS, **entry_models()}


def is_entry_kind(kind: str) -> bool:
    return kind in entry_models()
