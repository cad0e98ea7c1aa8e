"""The ways people are told: the log, a webhook (JSON POST), email over SMTP, and an SMS gateway
over HTTP (a URL and a body template, as Chinese SMS providers take it).

Each channel turns a level's contacts into recipients (a phone number, an address, or one
delivery for a hook) and sends one delivery, raising ``ChannelError`` with a one-line reason
for the log, ``permanent`` when the receiver refuses this one delivery (its body, its
recipient), which no retry would change. What fails every delivery of the channel alike (a
wrong URL or credentials, an exhausted account, a template that cannot be filled) is retried:
someone fixes the configuration, and the notices still waiting go out then. Every delivery
carries its idempotency key (``Idempotency-Key`` header, the email's Message-ID), so a
receiver that gets a retry can tell it is the same notice. Sending blocks: the notifier runs
it in its own threads, never in ingest's.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from string import Template
from typing import Any, Protocol

from server.alerts.config import ChannelConfig, Contact

log = logging.getLogger(__name__)

#: 4xx answers retried: the channel's own trouble, which an operator fixes for every delivery
#: at once (credentials, an account out of credit, a moved URL, a proxy's login), or "later"
#: (a timeout, too early, too many requests). Any other 4xx refuses this request.
HTTP_LATER = frozenset({401, 402, 403, 404, 405, 407, 408, 410, 425, 429})


class ChannelError(Exception):
    """A delivery that did not go through; the message is one line for the log. ``permanent``:
    this delivery itself is refused (its body, an address the server will never take), so
    trying it again would only be refused again."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Delivery:
    key: str
    channel: str
    recipient: str
    text: str
    #: What a hook is given besides the text: the alert's key, rule, site, state, level, reason.
    data: dict[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    name: str

    def recipients(self, people: Sequence[Contact]) -> list[str]: ...

    def send(self, delivery: Delivery) -> None: ...


@dataclass
class LogChannel:
    name: str

    def recipients(self, people: Sequence[Contact]) -> list[str]:
        return [""]

    def send(self, delivery: Delivery) -> None:
        log.warning("alert notice %s: %s", delivery.key, delivery.text)


@dataclass
class WebhookChannel:
    name: str
    url: str
    headers: dict[str, str]
    timeout_s: float

    def recipients(self, people: Sequence[Contact]) -> list[str]:
        return [""]

    def send(self, delivery: Delivery) -> None:
        body = {"key": delivery.key, "text": delivery.text, **delivery.data}
        _post(self.url, json.dumps(body, ensure_ascii=False).encode(), "application/json",
              {**self.headers, "Idempotency-Key": delivery.key}, self.timeout_s)  # fmt: skip


@dataclass
class SmsChannel:
    name: str
    url: str
    body: str
    content_type: str
    headers: dict[str, str]
    timeout_s: float

    def recipients(self, people: Sequence[Contact]) -> list[str]:
        return [p.phone for p in people if p.phone]

    def send(self, delivery: Delivery) -> None:
        quote = _quoting(self.content_type)
        try:
            body = Template(self.body).substitute(
                phone=quote(delivery.recipient), text=quote(delivery.text), key=delivery.key
            )
        except (KeyError, ValueError) as exc:
            raise ChannelError(f"the body template cannot be filled: {exc!r}") from None
        _post(self.url, body.encode(), self.content_type,
              {**self.headers, "Idempotency-Key": delivery.key}, self.timeout_s)  # fmt: skip


@dataclass
class SmtpChannel:
    name: str
    host: str
    port: int
    sender: str
    username: str | None
    password: str | None
    starttls: bool
    timeout_s: float

    def recipients(self, people: Sequence[Contact]) -> list[str]:
        return [p.email for p in people if p.email]

    def send(self, delivery: Delivery) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = delivery.recipient
        message["Subject"] = delivery.text.split("，")[0][:60]
        message["Date"] = formatdate(localtime=False)
        digest = hashlib.sha256(delivery.key.encode()).hexdigest()[:32]
        message["Message-ID"] = f"<{digest}@edge-server>"
        message["X-Idempotency-Key"] = delivery.key
        message.set_content(delivery.text)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"smtp {self.host}:{self.port}: {exc!r}"[:300],
                               permanent=_smtp_permanent(exc)) from None  # fmt: skip


def make(config: ChannelConfig) -> Channel:
    c = config
    if c.kind == "webhook":
        assert c.url is not None
        return WebhookChannel(c.name, c.url, c.headers, c.timeout_s)
    if c.kind == "sms":
        assert c.url is not None
        assert c.body is not None
        return SmsChannel(c.name, c.url, c.body, c.content_type, c.headers, c.timeout_s)
    if c.kind == "smtp":
        assert c.host is not None
        assert c.sender is not None
        return SmtpChannel(c.name, c.host, c.port, c.sender, c.username, c.password,
                           c.starttls, c.timeout_s)  # fmt: skip
    return LogChannel(c.name)


def _quoting(content_type: str) -> Callable[[str], str]:
    """How a value goes into a body of this type: JSON-escaped, form-encoded, or as it is."""
    if "json" in content_type:
        return _json_text
    if "x-www-form-urlencoded" in content_type:
        return urllib.parse.quote_plus
    return str


def _json_text(value: str) -> str:
    """``value`` as it goes between the quotes of a JSON string."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _post(
    url: str, body: bytes, content_type: str, headers: dict[str, str], timeout: float
) -> None:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={**headers, "Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        permanent = _http_permanent(exc.code)
        raise ChannelError(f"POST {url}: HTTP {exc.code}", permanent=permanent) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise ChannelError(f"POST {url}: {exc!r}"[:300]) from None
    if not 200 <= status < 300:
        raise ChannelError(f"POST {url}: HTTP {status}", permanent=_http_permanent(status))


def _http_permanent(status: int) -> bool:
    """A 4xx answer (but those of ``HTTP_LATER``) refuses this request's body; a 5xx is the
    receiver's trouble, which passes."""
    return 400 <= status < 500 and status not in HTTP_LATER


def _smtp_permanent(exc: Exception) -> bool:
    """A recipient or a message refused with a 5xx reply is refused again on every retry; the
    channel's own trouble (credentials or the sender refused, no STARTTLS or AUTH where they
    are configured: an operator fixes them) is retried, as are a 4xx (greylisting, a full
    mailbox) and a lost connection."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPAuthenticationError | smtplib.SMTPSenderRefused):
        return False
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    return False
