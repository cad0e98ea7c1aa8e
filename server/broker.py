"""Broker set-up: accounts (``mosquitto_passwd``), the ACL, the county's TLS certificates, and
agent config skeletons.

The password file keeps only salted hashes (Mosquitto's own format, written by Mosquitto's own
tool); the clear password is printed once and written into the agent's config skeleton.

Mosquitto, started as root by systemd, drops its privileges to the user ``mosquitto`` before it
reads the password file and the ACL, so every file it reads is owned by root, group
``mosquitto``, mode 0640 (0644 for certificates), in a directory of that group: what
``hand_to_mosquitto`` does when run as root.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

#: The group Mosquitto runs as after dropping privileges (Debian's package creates it).
MOSQUITTO_GROUP = "mosquitto"


class BrokerAccountError(Exception):
    """The account could not be written; the message says why."""


class CertificateError(Exception):
    """The certificates could not be made; the message says why."""


def mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(found).exists():
        raise BrokerAccountError("mosquitto_passwd not found (Debian: apt-get install mosquitto)")
    return found


def _mosquitto_gid() -> int | None:
    try:
        return grp.getgrnam(MOSQUITTO_GROUP).gr_gid
    except KeyError:
        return None  # no broker installed on this machine


def hand_to_mosquitto(path: Path, mode: int = 0o640) -> None:
    """Give ``path`` mode ``mode`` and, when run as root where Mosquitto is installed, owner
    root and group ``mosquitto``, so that Mosquitto reads it after dropping privileges."""
    path.chmod(mode)
    gid = _mosquitto_gid()
    if gid is not None and os.geteuid() == 0:
        os.chown(path, 0, gid)


def unreadable_note(path: Path) -> str | None:
    """What to run when Mosquitto (group ``mosquitto``) could not read ``path`` (it was not
    made by root), or None."""
    gid = _mosquitto_gid()
    if gid is None or path.stat().st_gid == gid:
        return None
    return f"Mosquitto cannot read {path}: as root, run chown root:{MOSQUITTO_GROUP} {path}"


def add_user(password_file: Path, username: str, password: str | None = None) -> str:
    """Add or reset ``username``; return the (new) clear password. The file is left owned by
    root, group ``mosquitto``, mode 0640 when run as root (see ``hand_to_mosquitto``)."""
    password = password or secrets.token_urlsafe(24)
    args = [mosquitto_passwd(), "-b", str(password_file), username, password]
    if not password_file.exists():
        password_file.parent.mkdir(parents=True, exist_ok=True)
        args.insert(1, "-c")
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerAccountError(
            f"mosquitto_passwd failed for {username}: {(result.stderr or result.stdout).strip()}"
        )
    hand_to_mosquitto(password_file)
    return password


# --- the ACL -----------------------------------------------------------------------------------


def acl_text(prefix: str, server_user: str) -> str:
    """Mosquitto's ACL for topic prefix ``prefix`` and the ingest processes' user."""
    return f"""# Topic access for the commodity edge system (topic prefix "{prefix}", protocol v1).
# Written by `edge-server broker acl` from server.toml (mqtt.topic_prefix, mqtt.username).
# Each agent's broker username is its agent id (%u): it may publish only its own events and
# status, and read only its own acknowledgements and commands, whatever the site level says.
# The server also refuses an agent that changes site, and any event whose agent id differs
# from the topic's.
pattern write {prefix}/v1/+/%u/events
pattern write {prefix}/v1/+/%u/status
pattern read {prefix}/v1/+/%u/acks
pattern read {prefix}/v1/+/%u/commands
# Everyone may see whether the server's ingest processes are online.
pattern read {prefix}/v1/server/+

# The server's ingest processes (username {server_user}) read every agent's events and status
# and answer with acknowledgements and commands.
user {server_user}
topic read {prefix}/v1/+/+/events
topic read {prefix}/v1/+/+/status
topic write {prefix}/v1/+/+/acks
topic write {prefix}/v1/+/+/commands
topic readwrite {prefix}/v1/server/+
"""


# --- certificates --------------------------------------------------------------------------------

#: The county CA's life when it is created; the broker's certificate lives ``--days``.
CA_DAYS = 3650
CA_BITS = 3072
BROKER_BITS = 2048


@dataclass(frozen=True)
class Certificates:
    """What ``make_certs`` wrote, in ``out``."""

    out: Path
    ca_created: bool
    broker_expires: str

    @property
    def ca_cert(self) -> Path:
        return self.out / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.out / "ca.key"

    @property
    def broker_cert(self) -> Path:
        return self.out / "broker.crt"

    @property
    def broker_key(self) -> Path:
        return self.out / "broker.key"


def openssl() -> str:
    found = shutil.which("openssl") or "/usr/bin/openssl"
    if not Path(found).exists():
        raise CertificateError("openssl not found (Debian: apt-get install openssl)")
    return found


def _openssl(*args: str) -> str:
    result = subprocess.run([openssl(), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise CertificateError(f"openssl {args[0]} failed: {detail[0] if detail else '?'}")
    return result.stdout


def _write_private(path: Path, text: str) -> None:
    """A new key file, mode 0600 from its first byte."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)


def _subject_alt_names(hosts: list[str]) -> str:
    names = []
    for host in hosts:
        try:
            names.append(f"IP:{ipaddress.ip_address(host)}")
        except ValueError:
            if not host or any(c.isspace() or c in ",/\\\"'" for c in host):
                raise CertificateError(f"--host {host!r} is not a host name or address") from None
            names.append(f"DNS:{host}")
    return ", ".join(names)


def make_certs(out: Path, hosts: list[str], days: int) -> Certificates:
    """The county CA (created in ``out`` unless ``ca.key`` and ``ca.crt`` are there already)
    and a broker certificate signed by it for ``hosts`` (DNS names or IP addresses, as agents
    and the server reach the broker).

    ``ca.key`` is root's only (0600): it signs, and nothing at run time needs it. ``broker.key``
    is root's and group ``mosquitto``'s (0640), for the broker; the certificates are public
    (0644). RSA keys, the most widely understood by devices' TLS stacks.
    """
    if not hosts:
        raise CertificateError("give at least one --host (the broker's name as agents reach it)")
    alt_names = _subject_alt_names(hosts)
    out.mkdir(parents=True, exist_ok=True)
    hand_to_mosquitto(out, 0o750)
    ca_key, ca_cert = out / "ca.key", out / "ca.crt"
    if ca_key.exists() != ca_cert.exists():
        raise CertificateError(f"{out} has only one of ca.key and ca.crt; move it away first")
    ca_created = not ca_key.exists()
    with tempfile.TemporaryDirectory(prefix="edge-certs-") as tmp:
        config = Path(tmp) / "openssl.cnf"
        config.write_text(
            f"""[req]
distinguished_name = dn
prompt = no
[dn]
CN = Commodity edge county CA ({hosts[0]})
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[broker]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = {alt_names}
""",
            encoding="utf-8",
        )
        if ca_created:
            _write_private(
                ca_key,
                _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{CA_BITS}"),
            )
            _openssl(
                "req", "-x509", "-new", "-config", str(config), "-extensions", "ca",
                "-key", str(ca_key), "-sha256", "-days", str(CA_DAYS), "-out", str(ca_cert),
            )  # fmt: skip
        key = Path(tmp) / "broker.key"
        _write_private(
            key,
            _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{BROKER_BITS}"),
        )
        request = Path(tmp) / "broker.csr"
        _openssl(
            "req", "-new", "-config", str(config), "-subj", f"/CN={hosts[0]}",
            "-key", str(key), "-out", str(request),
        )  # fmt: skip
        cert = Path(tmp) / "broker.crt"
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-set_serial", f"0x{secrets.token_hex(16)}", "-sha256", "-days", str(days),
            "-extfile", str(config), "-extensions", "broker", "-out", str(cert),
        )  # fmt: skip
        expires = _openssl("x509", "-in", str(cert), "-noout", "-enddate").strip()
        shutil.copyfile(cert, out / "broker.crt")
        _write_private(out / "broker.key", key.read_text(encoding="ascii"))
    ca_key.chmod(0o600)
    hand_to_mosquitto(out / "broker.key", 0o640)
    for public in (ca_cert, out / "broker.crt"):
        hand_to_mosquitto(public, 0o644)
    return Certificates(out, ca_created, _enddate(expires))


def _enddate(line: str) -> str:
    """``notAfter=Nov 23 04:00:00 2031 GMT`` -> ``2031-11-23``."""
    value = line.partition("=")[2]
    try:
        return (
            datetime.strptime(value, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC).date().isoformat()
        )
    except ValueError:
        return value


# --- agents -------------------------------------------------------------------------------------


#: Where the agent finds the county CA's certificate (deploy/README.md puts it there).
AGENT_CA_FILE = "/etc/edge-agent/ca.crt"


def agent_config_skeleton(
    *, agent_id: str, site: str, host: str, port: int, prefix: str, password: str, tls: bool
) -> str:
    tls_lines = f'tls = true\nca_file = "{AGENT_CA_FILE}"\n' if tls else ""
    return f"""# Agent {agent_id} at site {site}: generated by `edge-server broker provision-agent`.
# Add the storerooms, buses and sensors (see deploy/examples/agent.toml), then run
# `edge-agent --config THIS_FILE check`.

[agent]
id = "{agent_id}"
site = "{site}"
data_dir = "/var/lib/edge-agent"

[mqtt]
host = "{host}"
port = {port}
topic_prefix = "{prefix}"
username = "{agent_id}"
password = "{password}"
{tls_lines}"""
