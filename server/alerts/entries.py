"""What people decide about alerts, as entries of the county's stream (``server.entries``): an
acknowledgement is journaled, hash-chained and applied like any entry, so who saw an alert and
what regulating action they took is on the record as firmly as the readings."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints


class Acknowledgement(BaseModel):
    """Someone has seen the alert of ``key`` and says what was done (开启除湿机)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    by: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    action: Annotated[str, StringConstraints(max_length=200)] | None = None


KINDS: dict[str, type[BaseModel]] = {"alerts.ack": Acknowledgement}
