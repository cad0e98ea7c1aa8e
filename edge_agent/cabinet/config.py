"""The ``[cabinet]`` section of ``agent.toml``: the site's dispensing boxes, their products and
slots, and the quota defaults that hold until the server's registry says otherwise."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from edge_agent.configfile import Strict, between
from edge_agent.wire import Ident


class Product(Strict):
    """A product as the box shows it; ``group`` is what quotas count (condoms, pills, …)."""

    id: Ident
    name: str = Field(min_length=1, max_length=16)
    name_en: str | None = Field(default=None, max_length=32)
    group: Ident


class SlotConfig(Strict):
    number: Annotated[int, between(1, 255)]
    product: Ident
    capacity: Annotated[int, between(1, 1000)]


class ReaderConfig(Strict):
    bus: Ident
    format: Literal["hex-line", "binary", "id-line"] = "hex-line"
    #: For readers that send the UID least significant byte first.
    uid_reversed: bool = False
    #: A card reported again within this long is the same swipe (a card left on the reader).
    repeat_window_s: Annotated[float, between(0.5, 60)] = 3.0


class BoxConfig(Strict):
    id: Ident
    name: str = Field(default="", max_length=64)
    #: ``card``: a card authorises each take and a quota applies. ``open``: a closed box
    #: without a reader; a button vends one unit, paced so that one person cannot empty it.
    mode: Literal["card", "open"] = "card"
    board: Ident
    reader: ReaderConfig | None = None
    #: Product button n (1, 2, …) vends ``products[n-1]``; a box of one product needs no button.
    products: list[Ident] = Field(min_length=1, max_length=16)
    slots: list[SlotConfig] = Field(min_length=1, max_length=255)
    #: A slot at or under this many units is reported low.
    low_level: Annotated[int, between(0, 1000)] = 2
    choose_timeout_s: Annotated[float, between(3, 300)] = 20.0
    unlock_s: Annotated[int, between(1, 60)] = 30
    door_open_limit_s: Annotated[float, between(30, 7200)] = 900.0
    drop_detection: bool = True
    #: Open mode: the pause after each vend, and the most vends in any hour.
    pause_s: Annotated[float, between(0, 3600)] = 30.0
    max_per_hour: Annotated[int, between(1, 1000)] = 12
    language: Literal["zh", "en"] = "zh"

    @model_validator(mode="after")
    def _consistent(self) -> BoxConfig:
        if self.mode == "card" and self.reader is None:
            raise ValueError("a box in card mode needs a reader")
        numbers = [s.number for s in self.slots]
        if len(set(numbers)) != len(numbers):
            raise ValueError("slot numbers repeat")
        if len(set(self.products)) != len(self.products):
            raise ValueError("products repeat")
        stocked = {s.product for s in self.slots}
        missing = [p for p in self.products if p not in stocked]
        if missing:
            raise ValueError(f"no slot holds {', '.join(missing)}")
        unlisted = sorted(stocked - set(self.products))
        if unlisted:
            raise ValueError(f"slots hold {', '.join(unlisted)}, which products does not list")
        return self


class QuotaDefault(Strict):
    """A rule used until the server's registry has one for the same card and product group."""

    group: Ident = "default"
    product_group: Ident
    quantity: Annotated[int, between(0, 10_000)]
    period_days: Annotated[int, between(1, 366)]


def _default_quota() -> list[QuotaDefault]:
    return [QuotaDefault(product_group="condoms", quantity=1, period_days=30)]


class CabinetSection(Strict):
    #: The county's card key (64 hex digits); needed by a box with a card reader.
    card_key_file: Path | None = None
    #: The site's time zone: for the dates on the display and an age policy.
    timezone: str = "Asia/Shanghai"
    products: list[Product] = Field(default_factory=list)
    boxes: list[BoxConfig] = Field(default_factory=list)
    quota: list[QuotaDefault] = Field(default_factory=_default_quota)
    #: Until the registry says otherwise: what a card the registry does not know may take.
    unregistered: Literal["refuse", "guest"] = "refuse"
    guest_quantity: Annotated[int, between(0, 100)] = 1
    guest_period_days: Annotated[int, between(1, 366)] = 30
    #: A resident ID card the registry does not know counts as a card of this group (the ID
    #: number is one person's for life); unset: it is an unregistered card like any other.
    id_card_group: Ident | None = "default"
    #: Some counties limit boxes to ages 18-60; applies to ID cards, whose number gives the age.
    min_age: Annotated[int, between(0, 150)] | None = None
    max_age: Annotated[int, between(0, 150)] | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CabinetSection:
        if any(b.mode == "card" for b in self.boxes) and self.card_key_file is None:
            raise ValueError("card_key_file is needed by a box with a card reader")
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ValueError("min_age is above max_age")
        return self

    def product(self, product_id: str) -> Product:
        return next(p for p in self.products if p.id == product_id)


def cross_check(
    cabinet: dict[str, Any], serial_buses: set[str], other_buses: set[str]
) -> Iterable[tuple[str, str]]:
    """Problems spanning sections: unknown products and buses, and a serial line used twice
    (the board protocol has no address: one line carries one device)."""
    known = {str(p.get("id")) for p in _items(cabinet, "products")}
    used: dict[str, str] = {}
    for i, box in enumerate(_items(cabinet, "boxes")):
        where = f"cabinet.boxes[{i}]"
        for j, product in enumerate(box.get("products") or []):
            if isinstance(product, str) and product not in known:
                yield f"{where}.products[{j}]", f"unknown product {product!r}"
        devices = [("board", box.get("board"))]
        reader = box.get("reader")
        if isinstance(reader, dict):
            devices.append(("reader.bus", reader.get("bus")))
        for key, bus in devices:
            if not isinstance(bus, str):
                continue
            if bus in other_buses:
                yield f"{where}.{key}", f"bus {bus!r} is a Modbus bus; a box needs a serial one"
            elif bus not in serial_buses:
                yield f"{where}.{key}", f"unknown serial bus {bus!r}"
            elif bus in used:
                yield f"{where}.{key}", f"serial bus {bus!r} is already used by {used[bus]}"
            else:
                used[bus] = f"{where}.{key}"


def _items(section: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = section.get(key)
    return [x for x in items if isinstance(x, dict)] if isinstance(items, list) else []
