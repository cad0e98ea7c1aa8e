"""``/metrics``: the Prometheus exposition of what the database knows, so that every server
process answers alike: events acknowledged and dead-lettered per agent (counters: PromQL's
rate() gives the ingest rate), each agent's backlog and liveness, and the open alerts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from server.alerts.queries import open_counts
from server.link import agent_links, events_acknowledged
from server.users.roles import Permission
from server.web.app import WebState
from server.web.auth import Who, allowed, state

router = APIRouter(tags=["metrics"])
PREFIX = "fpc"


class _Snapshot(Collector):
    """One scrape: read once, from the database, what the families report."""

    def __init__(self, web: WebState, who: Who) -> None:
        self.web = web
        self.who = who

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        web, who = self.web, self.who
        now = web.now()
        links = [
            link
            for link in agent_links(
                web.engine,
                now,
                timedelta(seconds=web.config.ingest.offline_after_s),
                field_only=True,
            )
            if who.sees(link.site_id)
        ]
        acknowledged = events_acknowledged(web.engine)
        labels = ["site", "agent"]
        events = CounterMetricFamily(
            f"{PREFIX}_ingest_events", "Events stored and acknowledged to the agent.", labels=labels
        )
        dead = CounterMetricFamily(
            f"{PREFIX}_ingest_dead_letters", "Messages refused whole (dead-lettered).",
            labels=labels,
        )  # fmt: skip
        backlog = GaugeMetricFamily(
            f"{PREFIX}_agent_backlog_events",
            "Events in the agent's outbox not yet acknowledged, as it last said.",
            labels=labels,
        )
        online = GaugeMetricFamily(
            f"{PREFIX}_agent_online", "1 when the agent is online, else 0.", labels=labels
        )
        heard = GaugeMetricFamily(
            f"{PREFIX}_agent_last_heard_timestamp_seconds",
            "When anything was last received from the agent (Unix time).",
            labels=labels,
        )
        for link in links:
            key = [link.site_id, link.agent_id]
            events.add_metric(key, acknowledged.get(link.agent_id, 0))
            dead.add_metric(key, link.dead_lettered)
            raw = link.status.get("backlog")
            if isinstance(raw, int):
                backlog.add_metric(key, raw)
            online.add_metric(key, 1.0 if link.online else 0.0)
            heard.add_metric(key, link.last_heard_at.timestamp())
        yield from (events, dead, backlog, online, heard)
        firing = GaugeMetricFamily(
            f"{PREFIX}_alerts_open",
            "Open alerts (firing or acknowledged, not yet resolved).",
            labels=["site", "rule", "severity", "state"],
        )
        with web.engine.connect() as conn:
            for site, rule, severity, alert_state, n in open_counts(conn):
                if who.sees(site):
                    firing.add_metric([site, rule, severity, alert_state], n)
        yield firing


@router.get("/metrics", response_class=Response)
def metrics(request: Request, who: Annotated[Who, Depends(allowed(Permission.VIEW))]) -> Response:
    """Prometheus metrics (text exposition format), for a token's or a session's scope."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(state(request), who))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
