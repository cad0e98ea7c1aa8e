"""Load a TOML file into a pydantic model with one clear line per problem.

A leaf module like ``wire``: the server and the simulators use it too. A bad file must never
show a traceback to the keeper who edited it; it shows ``FILE: key.path[2].name: what is wrong``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Protocol, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import ErrorDetails


class ConfigError(Exception):
    """A configuration file could not be read or is invalid; ``str()`` is fit to print."""


class Strict(BaseModel):
    """Base for config sections: unknown keys are an error, so a typo is never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class CrossChecked(Protocol):
    @classmethod
    def cross_check(cls, data: dict[str, Any]) -> Iterable[tuple[str, str]]:
        """Yield (key path, message) for each problem that spans several sections, from the
        raw file, so they are reported together with the field errors."""
        ...


def between(lo: float, hi: float) -> AfterValidator:
    """A range check whose message says the whole range: ``must be 1..247``."""

    def check(value: float) -> float:
        if not lo <= value <= hi:
            raise ValueError(f"must be {lo}..{hi}")
        return value

    return AfterValidator(check)


Port = Annotated[int, between(1, 65535)]
Positive = Annotated[float, between(0.001, 10**9)]


class TlsSection(Strict):
    """MQTT over TLS, for the ``[mqtt]`` sections of agent and server. The broker's certificate
    must be signed by ``ca_file`` (the county CA, ``ca.crt`` from ``edge-server broker
    make-certs``) and name the host; there is no way to skip that check, since it is what keeps
    the password from a stranger's broker. With TLS and no port given, the port is 8883."""

    port: Port = 1883
    tls: bool = False
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _tls(self) -> Self:
        if self.tls and self.ca_file is None:
            raise ValueError("tls = true needs ca_file (the county CA certificate, ca.crt)")
        if not self.tls and self.ca_file is not None:
            raise ValueError("ca_file is set but tls is false; set tls = true to use it")
        if self.tls and "port" not in self.model_fields_set:
            self.port = 8883
        return self


M = TypeVar("M", bound=BaseModel)


def format_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return f"must be a whole number (got {value!r})"
    if kind in {"float_parsing", "float_type"}:
        return f"must be a number (got {value!r})"
    if kind in {"bool_parsing", "bool_type"}:
        return f"must be true or false (got {value!r})"
    if kind == "string_type":
        return f"must be a text string (got {value!r})"
    if kind == "string_pattern_mismatch":
        return (
            f"{value!r} is not a valid identifier "
            "(lower-case letters, digits, '-', '_', '.'; at most 64)"
        )
    msg = str(error["msg"])
    return msg[:1].lower() + msg[1:] + (f" (got {value!r})" if kind == "literal_error" else "")


def format_validation_error(source: str, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        lines.append(f"{source}: {format_path(loc)}: {_describe(error)}")
    return "\n".join(lines)


def load(path: Path | str, model: type[M]) -> M:
    """Read, parse and validate ``path``; raise ConfigError with every problem found."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # Notepad writes a BOM
    except FileNotFoundError:
        raise ConfigError(f"{name}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror}") from None
    return loads(text, model, source=name)


def loads(text: str, model: type[M], *, source: str = "<config>") -> M:
    """Parse and validate; every problem of the file is in the one ConfigError raised."""
    text = text.removeprefix("\ufeff")
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    check = getattr(model, "cross_check", None)
    problems = [f"{source}: {where}: {what}" for where, what in check(data)] if check else []
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        problems.insert(0, format_validation_error(source, exc))
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def duplicates(section: str, ids: list[str]) -> Iterable[tuple[str, str]]:
    """Report each id that appears a second time in a list section."""
    seen: set[str] = set()
    for index, ident in enumerate(ids):
        if ident in seen:
            yield f"{section}[{index}].id", f"duplicate id {ident!r}"
        seen.add(ident)
