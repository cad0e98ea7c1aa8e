"""MQTT over TLS for agent and server: one trust rule (the county CA only) and one way to say
what went wrong. A leaf module like ``wire`` and ``configfile``: the server imports it too."""

from __future__ import annotations

import ssl
from pathlib import Path


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """Trust only ``ca_file`` (the county CA), check the broker's host name, TLS 1.2 or newer.
    Raises ``OSError`` (``ssl.SSLError`` included) when the file cannot be read or holds no
    certificate."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def describe_connect_error(exc: OSError, tls: bool = False) -> str:
    """One line for a failed connection, with what to check for a TLS failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = str(exc.verify_message or exc.reason or exc).strip().rstrip(".")
        return f"TLS: broker certificate not accepted ({why}); check mqtt.ca_file and mqtt.host"
    plain = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or plain}; is the broker's port a TLS listener?"
    if tls and isinstance(exc, ConnectionResetError):
        return f"TLS handshake failed ({plain}); is the broker's port a TLS listener?"
    return plain
