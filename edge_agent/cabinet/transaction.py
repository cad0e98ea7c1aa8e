"""One box's take, pure: the state machine from a swipe (or a button) to a recorded vend.

idle → card read → refused (reason shown) or authorised → product chosen with a button (a box
of one product skips this; no choice within ``choose_timeout_s`` goes back to idle) → vend →
delivered, failed (another slot of the product is tried if there is one) or unknown → idle.
A technician's card unlocks the door instead; the door's opening and closing, a restock
confirmation and tamper follow from there. One vend at a time: what arrives meanwhile is
ignored. The machine takes values (time included) and returns actions; the service performs
them (records, board commands) and feeds back their outcomes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Literal, cast, get_args

from edge_agent.cabinet import stock
from edge_agent.cabinet.config import BoxConfig
from edge_agent.cabinet.quota import Allowance, open_box_allows
from edge_agent.wire import BOARD_NOT_READY, RefusalReason, UnknownReason, VendFailure

Line = tuple[str, str]


# --- what the service finds out and hands in --------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """What a swipe was found to allow: a refusal, a technician, or an allowance per product
    (with the allowance that will be left after one more take, for the display)."""

    card: str
    technician: bool = False
    refusal: RefusalReason | None = None
    next_at: datetime | None = None
    allowances: Mapping[str, Allowance] = field(default_factory=dict)
    after_take: Mapping[str, Allowance] = field(default_factory=dict)


VendOutcome = Literal["delivered", "failed", "unknown"]


# --- what the machine asks for ---------------------------------------------------------------


@dataclass(frozen=True)
class Show:
    message: str
    params: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Vend:
    transaction: uuid.UUID
    slot: int
    product: str
    card: str | None


@dataclass(frozen=True)
class Delivered:
    vend: Vend


@dataclass(frozen=True)
class Failed:
    vend: Vend
    reason: VendFailure
    next_slot: int | None


@dataclass(frozen=True)
class Unknown:
    vend: Vend
    reason: UnknownReason


@dataclass(frozen=True)
class Refuse:
    reason: RefusalReason
    card: str | None
    product: str | None = None
    next_at: datetime | None = None


@dataclass(frozen=True)
class Unlock:
    technician: str


@dataclass(frozen=True)
class DoorMoved:
    opened: bool
    technician: str | None


@dataclass(frozen=True)
class TamperAlarm:
    reason: Literal["door_without_card", "door_left_open"]
    open_s: float


@dataclass(frozen=True)
class RestockAnswer:
    """The technician confirmed the box's pending restock orders, or reported a difference."""

    technician: str
    confirmed: bool


Action = (
    Show
    | Vend
    | Delivered
    | Failed
    | Unknown
    | Refuse
    | Unlock
    | DoorMoved
    | TamperAlarm
    | RestockAnswer
)


# --- states -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Idle:
    pass


@dataclass(frozen=True)
class Choosing:
    offer: Offer
    until: datetime


@dataclass(frozen=True)
class Vending:
    vend: Vend
    tried: tuple[int, ...]
    offer: Offer | None
    #: Found under way after a restart: nobody is waiting at the box, so nothing is retried.
    resumed: bool = False


@dataclass(frozen=True)
class Unlocked:
    technician: str
    until: datetime


@dataclass(frozen=True)
class DoorOpen:
    technician: str | None
    since: datetime
    alarmed: bool = False


@dataclass(frozen=True)
class Confirming:
    technician: str
    until: datetime


State = Idle | Choosing | Vending | Unlocked | DoorOpen | Confirming

CONFIRM_BUTTON = 0x80
CANCEL_BUTTON = 0x81


class Take:
    """The take state machine of one box. ``new_id`` makes transaction ids (a test passes a
    counter). ``open_vends`` are the box's recent vend times (open mode pacing), restored from
    storage at start."""

    def __init__(
        self,
        box: BoxConfig,
        *,
        new_id: Callable[[], uuid.UUID] = uuid.uuid4,
        open_vends: Sequence[datetime] = (),
        pending_orders: Callable[[], bool] = lambda: False,
    ) -> None:
        self.box = box
        self.state: State = Idle()
        self._new_id = new_id
        self._open_vends = list(open_vends)
        self._pending_orders = pending_orders
        #: The door opened while a vend ran (forced: nobody's card unlocked it); the vend's
        #: result must still be recorded, and the door taken up when it is.
        self._door_during_vend: datetime | None = None

    @property
    def busy(self) -> bool:
        return isinstance(self.state, Vending)

    # --- inputs ---------------------------------------------------------------------------

    def swiped(
        self, offer: Offer, slots: Sequence[stock.Slot], today: date, now: datetime
    ) -> list[Action]:
        state = self.state
        if isinstance(state, Vending | Unlocked | Confirming):
            return []
        if isinstance(state, DoorOpen):
            if offer.technician and state.technician is None:
                # A technician arriving at a door left open takes it over; the alarm stands.
                self.state = DoorOpen(offer.card, state.since, state.alarmed)
                return [Show("service")]
            return []
        if offer.technician:
            self.state = Unlocked(offer.card, now + timedelta(seconds=self.box.unlock_s))
            return [Unlock(offer.card)]  # the service shows the order it finds, if any
        if offer.refusal is not None:
            self.state = Idle()
            return [
                Refuse(offer.refusal, offer.card, next_at=offer.next_at),
                Show(offer.refusal, {"next_at": offer.next_at}),
            ]
        if len(self.box.products) == 1:
            return self._choose(offer, self.box.products[0], slots, today)
        self.state = Choosing(offer, now + timedelta(seconds=self.box.choose_timeout_s))
        return [Show("choose", {"count": len(self.box.products)})]

    def pressed(
        self, button: int, slots: Sequence[stock.Slot], today: date, now: datetime
    ) -> list[Action]:
        state = self.state
        if isinstance(state, Confirming):
            if button in (CONFIRM_BUTTON, CANCEL_BUTTON):
                self.state = Idle()
                confirmed = button == CONFIRM_BUTTON
                return [
                    RestockAnswer(state.technician, confirmed),
                    Show("restocked" if confirmed else "difference"),
                ]
            return []
        if not 1 <= button <= len(self.box.products):
            return []
        product = self.box.products[button - 1]
        if isinstance(state, Choosing):
            return self._choose(state.offer, product, slots, today)
        if isinstance(state, Idle) and self.box.mode == "open":
            refusal = open_box_allows(
                self._open_vends, now, self.box.pause_s, self.box.max_per_hour
            )
            if refusal is not None:
                return [Refuse(refusal, None, product), Show(refusal)]
            return self._vend(None, product, slots, today, ())
        return []

    def vend_ended(
        self,
        outcome: VendOutcome,
        reason: VendFailure | UnknownReason | None,
        slots: Sequence[stock.Slot],
        today: date,
        now: datetime,
    ) -> list[Action]:
        """The board's answer for the vend under way (``reason``: a VendFailure, or an unknown
        outcome's reason)."""
        state = self.state
        if not isinstance(state, Vending):
            return []
        if outcome == "failed":
            failure = _failure(reason)
        elif outcome == "unknown":
            unknown = _unknown_reason(reason)
        vend = state.vend
        self.state = Idle()
        if self._door_during_vend is not None:
            self.state = DoorOpen(None, self._door_during_vend, alarmed=True)
            self._door_during_vend = None
        if outcome == "delivered":
            if self.box.mode == "open":
                self._open_vends = [v for v in self._open_vends if now - v < timedelta(hours=1)]
                self._open_vends.append(now)
            after = state.offer.after_take.get(vend.product) if state.offer else None
            return [Delivered(vend), Show("take", {"after": after})]
        if outcome == "unknown":
            return [Unknown(vend, unknown), Show("unknown")]
        if failure in BOARD_NOT_READY:
            shown = "busy" if failure == "board_busy" else "door_open"
            return [Failed(vend, failure, None), Show(shown)]
        tried = (*state.tried, vend.slot)
        retry = stock.choose(slots, vend.product, today, skip=tried)
        if isinstance(self.state, DoorOpen) or state.resumed:
            retry = None  # no vend while the door stands open, nor for a villager long gone
        failed = Failed(vend, failure, retry.number if retry else None)
        if retry is None:
            return [failed, Show("failed")]
        return [failed, *self._vend(state.offer, vend.product, slots, today, tried)]

    def door(self, opened: bool, now: datetime) -> list[Action]:
        state = self.state
        if isinstance(state, Vending):
            # Forced open (or shut again) while the motor runs: alarm now, and keep waiting for
            # the vend's result, which is recorded whatever the door does.
            if opened and self._door_during_vend is None:
                self._door_during_vend = now
                return [DoorMoved(True, None), TamperAlarm("door_without_card", 0.0)]
            if not opened and self._door_during_vend is not None:
                self._door_during_vend = None
                return [DoorMoved(False, None)]
            return []
        if opened:
            if isinstance(state, DoorOpen):
                return []
            technician = state.technician if isinstance(state, Unlocked) else None
            self.state = DoorOpen(technician, now)
            actions: list[Action] = [DoorMoved(True, technician)]
            if technician is None:
                actions.append(TamperAlarm("door_without_card", 0.0))
                self.state = DoorOpen(None, now, alarmed=True)
            return [*actions, Show("service")]
        if not isinstance(state, DoorOpen):
            return []
        closed: list[Action] = [DoorMoved(False, state.technician)]
        if state.technician is not None and self._pending_orders():
            self.state = Confirming(
                state.technician, now + timedelta(seconds=self.box.choose_timeout_s * 3)
            )
            return [*closed, Show("confirm")]
        self.state = Idle()
        return [*closed, Show("welcome")]

    def door_seen(self, opened: bool, now: datetime) -> list[Action]:
        """Where the board's status says the door is, when no event said so (the door stood
        open at start, or an event was lost). A door found open raises no tamper by itself:
        it is a door left open, alarmed after ``door_open_limit_s``."""
        state = self.state
        if isinstance(state, Vending) or opened == isinstance(state, DoorOpen):
            return []
        if not opened or isinstance(state, Unlocked):
            return self.door(opened, now)
        self.state = DoorOpen(None, now)
        return [DoorMoved(True, None), Show("service")]

    def tick(self, now: datetime) -> list[Action]:
        """Timeouts: a choice not made, an unlocked door not opened, a door left open."""
        state = self.state
        if isinstance(state, Choosing | Unlocked | Confirming) and now >= state.until:
            self.state = Idle()
            return [Show("welcome")]
        if isinstance(state, DoorOpen) and not state.alarmed:
            open_s = (now - state.since).total_seconds()
            if open_s >= self.box.door_open_limit_s:
                self.state = DoorOpen(state.technician, state.since, alarmed=True)
                return [TamperAlarm("door_left_open", open_s)]
        return []

    def resume_vending(self, vend: Vend) -> None:
        """After a restart with a vend under way whose result is still to come."""
        self.state = Vending(vend, (), None, resumed=True)

    def nobody_waiting(self) -> None:
        """The vend's result is late (the board did not answer): whoever swiped has gone, so a
        failure found later tries no other slot."""
        if isinstance(self.state, Vending):
            self.state = replace(self.state, resumed=True)

    def abandon(self) -> None:
        """The vend could not be started (its intent was not stored): back to idle."""
        if isinstance(self.state, Vending):
            self.state = Idle()

    # --- helpers --------------------------------------------------------------------------

    def _choose(
        self, offer: Offer, product: str, slots: Sequence[stock.Slot], today: date
    ) -> list[Action]:
        allowance = offer.allowances.get(product)
        if allowance is not None and not allowance.allowed:
            self.state = Idle()
            return [
                Refuse("quota", offer.card, product, allowance.next_at),
                Show("quota", {"next_at": allowance.next_at}),
            ]
        return self._vend(offer, product, slots, today, ())

    def _vend(
        self,
        offer: Offer | None,
        product: str,
        slots: Sequence[stock.Slot],
        today: date,
        tried: tuple[int, ...],
    ) -> list[Action]:
        slot = stock.choose(slots, product, today, skip=tried)
        card = offer.card if offer else None
        if slot is None:
            self.state = Idle()
            reason: RefusalReason = (
                "expired"
                if any(
                    s.product == product and stock.health(s, today, 0) == "expired" for s in slots
                )
                else "empty"
            )
            return [Refuse(reason, card, product), Show(reason)]
        vend = Vend(self._new_id(), slot.number, product, card)
        self.state = Vending(vend, tried, offer)
        # Shown first: what the vend's outcome shows must not be overwritten by it.
        return [Show("vending"), vend]


def _failure(reason: str | None) -> VendFailure:
    if reason not in get_args(VendFailure):
        raise ValueError(f"a failed vend needs a failure's reason, not {reason!r}")
    return cast(VendFailure, reason)


def _unknown_reason(reason: str | None) -> UnknownReason:
    if reason not in get_args(UnknownReason):
        raise ValueError(f"an unknown outcome needs its reason, not {reason!r}")
    return cast(UnknownReason, reason)
