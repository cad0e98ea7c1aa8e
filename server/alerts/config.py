"""``[alerts]`` in ``server.toml``: the limits the server judges storerooms by, how long each rule
holds and clears, who is told at which level, over which channels, and when.

    [alerts]
    home_site = "county"          # whose contacts hear of the server's own troubles
    renotify_s = 1800
    escalate_s = 900
    quiet_hours = "22:00-07:00"   # only critical alerts are told then

    [alerts.limits.default]       # and [alerts.limits."SITE"], [alerts.limits."SITE:no2"]
    temperature_c = [10, 30]
    humidity_pct = [35, 75]

    [alerts.rules."climate.sensor"]
    for_s = 120
    clear_s = 300

    [alerts.rules."village-3:box.jam"]    # one site apart
    enabled = false

    [[alerts.contacts]]
    site = "county"
    name = "李保管"
    level = 1                     # 1 keeper, 2 station head, 3 county
    phone = "13800000001"
    email = "keeper@example.cn"

    [[alerts.channels]]
    name = "sms"
    kind = "sms"                  # log | webhook | smtp | sms
    url = "http://sms.local/send"
    body = '{"mobile": "$phone", "content": "$text"}'
"""

from __future__ import annotations

import re
from datetime import time
from string import Template
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from edge_agent.configfile import Strict, between
from server.alerts.escalation import Escalation
from server.alerts.lifecycle import Policy
from server.alerts.signals import Range

Pair = tuple[float, float]
HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
#: The people a site's alerts must reach, as the monitoring rules ask.
MIN_CONTACTS = 3


class Limits(Strict):
    temperature_c: Pair = (10.0, 30.0)
    humidity_pct: Pair = (35.0, 75.0)

    @field_validator("temperature_c", "humidity_pct")
    @classmethod
    def _ordered(cls, value: Pair) -> Pair:
        if not value[0] < value[1]:
            raise ValueError(f"must be [low, high] with low < high, not {list(value)}")
        return value

    def range(self) -> Range:
        return Range(self.temperature_c, self.humidity_pct)


#: Every rule an alert can be raised by (``projection.POLICIES`` has a timing for each).
RULES = frozenset({
    "climate.range", "climate.room", "climate.sensor", "climate.calibration", "climate.exposure",
    "box.slot", "box.jam", "box.tamper", "box.offline", "box.shared", "agent.storage",
    "agent.offline", "agent.gap", "agent.messages", "agent.commands", "stock.expiry",
    "ledger.discrepancy", "ledger.variance", "alerts.channel",
})  # fmt: skip


class RulePolicy(Strict):
    #: False: never raised (for one site with ``"SITE:rule"``); unset: as the rule is.
    enabled: bool | None = None
    #: The condition must hold this long before the alert fires.
    for_s: Annotated[float, between(0, 7 * 86400)] | None = None
    #: The condition must be gone this long before the alert resolves.
    clear_s: Annotated[float, between(0, 7 * 86400)] | None = None


class Contact(Strict):
    #: A site id, or "*" for every site (the county office that hears of everything).
    site: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64)
    level: Annotated[int, between(1, 9)] = 1
    phone: str | None = Field(default=None, pattern=r"^\+?\d{5,20}$")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if self.phone is None and self.email is None:
            raise ValueError(f"{self.name} needs a phone or an email to be told anything")
        return self


class ChannelConfig(Strict):
    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")
    kind: Literal["log", "webhook", "smtp", "sms"]
    #: webhook and sms: where to POST.
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    #: sms: the request body, with $phone and $text (escaped for JSON when it is JSON).
    body: str | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = Field(default_factory=dict)
    #: smtp
    host: str | None = None
    port: Annotated[int, between(1, 65535)] = 25
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    sender: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    timeout_s: Annotated[float, between(0.5, 120)] = 10.0

    @model_validator(mode="after")
    def _complete(self) -> ChannelConfig:
        needs = {
            "webhook": ("url",),
            "sms": ("url", "body"),
            "smtp": ("host", "sender"),
            "log": (),
        }[self.kind]
        missing = [n for n in needs if getattr(self, n) is None]
        if missing:
            raise ValueError(f"a {self.kind} channel needs {', '.join(missing)}")
        if self.kind == "sms" and self.body is not None:
            try:
                names = set(Template(self.body).get_identifiers())
            except ValueError:
                names = {"?"}
            if "text" not in names or not names <= {"phone", "text", "key"}:
                raise ValueError(
                    "an sms channel's body takes $phone, $text and $key, and must have $text"
                )
        return self


class AlertsSection(Strict):
    home_site: str = Field(default="county", min_length=1, max_length=64)
    #: How often the timer observes holds, absences and escalations, and retries deliveries.
    tick_s: Annotated[float, between(0.2, 300)] = 5.0
    renotify_s: Annotated[float, between(60, 7 * 86400)] = 1800.0
    escalate_s: Annotated[float, between(60, 7 * 86400)] = 900.0
    quiet_hours: str | None = None
    #: An agent silent this long is offline (its heartbeats come every minute or so).
    offline_after_s: Annotated[float, between(30, 7 * 86400)] = 600.0
    #: A gap in an agent's sequence not filled this long is an alert.
    gap_after_s: Annotated[float, between(60, 30 * 86400)] = 3600.0
    #: Cumulative exposure: at or above this temperature for this long within the window.
    exposure_c: Annotated[float, between(-40, 80)] = 30.0
    exposure_hours: Annotated[float, between(0.1, 24 * 30)] = 10.0
    exposure_days: Annotated[int, between(1, 90)] = 7
    #: Delivery: tries per notice and recipient before it is given up, the first retry's wait.
    attempts: Annotated[int, between(1, 100)] = 8
    retry_s: Annotated[float, between(0.1, 3600)] = 5.0
    #: Failures in a row after which a channel is an alert of its own.
    channel_failures: Annotated[int, between(1, 100)] = 2
    #: Notices told, and silences ended, longer ago than this are pruned (``retention``); a
    #: year and a month by default, so last year's same month can still be looked up.
    keep_notices_days: Annotated[int, between(30, 3650)] = 400
    limits: dict[str, Limits] = Field(default_factory=dict)
    rules: dict[str, RulePolicy] = Field(default_factory=dict)
    contacts: list[Contact] = Field(default_factory=list)
    channels: list[ChannelConfig] = Field(
        default_factory=lambda: [ChannelConfig(name="log", kind="log")]
    )

    @field_validator("quiet_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None and not HOURS.match(value):
            raise ValueError(f"must be HH:MM-HH:MM, e.g. '22:00-07:00', not {value!r}")
        return value

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: dict[str, RulePolicy]) -> dict[str, RulePolicy]:
        unknown = sorted(name for name in value if name.rpartition(":")[2] not in RULES)
        if unknown:
            raise ValueError(
                f"no rule {', '.join(unknown)}: a rule is one of {', '.join(sorted(RULES))}, "
                "or SITE:rule for one site"
            )
        return value

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[ChannelConfig]) -> list[ChannelConfig]:
        names = [c.name for c in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"channel names must be unique: {', '.join(twice)}")
        return value

    def range_for(self, site: str, storeroom: str) -> Range:
        """The most specific limits: ``SITE:room``, then ``SITE``, then ``default``."""
        for name in (f"{site}:{storeroom}", site, "default"):
            if name in self.limits:
                return self.limits[name].range()
        return Range()

    def policies(self, defaults: dict[str, Policy]) -> dict[str, Policy]:
        """Each rule's timing, and ``SITE:rule`` for a site configured apart (on top of the
        rule's own)."""
        out = dict(defaults)
        for name in sorted(self.rules, key=lambda n: ":" in n):  # rules first, then sites
            given = self.rules[name]
            base = out.get(name.rpartition(":")[2], Policy())
            out[name] = Policy(
                for_s=base.for_s if given.for_s is None else given.for_s,
                clear_s=base.clear_s if given.clear_s is None else given.clear_s,
                flap_window_s=base.flap_window_s,
                flap_limit=base.flap_limit,
                enabled=base.enabled if given.enabled is None else given.enabled,
            )
        return out

    def escalation(self, zone: ZoneInfo) -> Escalation:
        quiet_from = quiet_to = None
        if self.quiet_hours is not None:
            start, end = self.quiet_hours.split("-")
            quiet_from, quiet_to = time.fromisoformat(start), time.fromisoformat(end)
        return Escalation(self.renotify_s, self.escalate_s, quiet_from, quiet_to, zone)

    def contacts_of(self, sites: list[str]) -> dict[int, list[Contact]]:
        """The people told of an alert at the first of ``sites`` (the site, then its parents up
        the levels): each level from the nearest site that has someone at it, and "*" last."""
        out: dict[int, list[Contact]] = {}
        for site in [*sites, "*"]:
            here: dict[int, list[Contact]] = {}
            for contact in self.contacts:
                if contact.site == site:
                    here.setdefault(contact.level, []).append(contact)
            for level, people in here.items():
                out.setdefault(level, people)
        return dict(sorted(out.items()))
