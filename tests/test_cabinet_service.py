"""The box service against the simulated board and card reader over real pseudo-terminals:
swipes, quotas, failed and unknown vends, restarts mid-vend, restocking and tamper."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from edge_agent.cabinet import store
from tests.cabinet_rig import (
    LOST,
    NEIGHBOUR,
    STRANGER,
    TECHNICIAN,
    VILLAGER,
    box_rig,
    card,
)
from tests.support import eventually


async def test_a_registered_card_gets_one_unit_and_then_is_told_when_it_may_come_back(
    tmp_path: Path,
) -> None:
    async with box_rig(tmp_path) as rig:
        assert rig.reader is not None
        rig.reader.swipe(VILLAGER)
        (dispense,) = await rig.wait_event("cabinet.dispense")
        assert dispense.payload.card == card(VILLAGER)
        assert (dispense.payload.slot, dispense.payload.remaining) == (1, 4)
        assert dispense.payload.batch == "B1"
        assert rig.board.truth.total_dropped() == 1
        await eventually(lambda: "请取货" in rig.board.display[0], what="take message")
        await eventually(lambda: rig.board.display[1].endswith("可领"), what="next date")

        await eventually(lambda: not rig.board.vending, what="motor stopped")
        rig.later()  # past the reader's repeat window: a new swipe
        rig.reader.swipe(VILLAGER)
        (refused,) = await rig.wait_event("cabinet.refused")
        assert refused.payload.reason == "quota"
        assert refused.payload.next_at is not None
        await eventually(lambda: rig.board.display[0] == "本期已领过", what="quota message")
        assert rig.board.truth.total_dropped() == 1
        assert len(await rig.events("cabinet.dispense")) == 1


async def test_a_card_left_on_the_reader_takes_once(tmp_path: Path) -> None:
    async with box_rig(tmp_path) as rig:
        assert rig.reader is not None
        await rig.reader.hold(VILLAGER, 0.4)  # reported every 0.05 s within the repeat window
        await rig.wait_event("cabinet.dispense")
        await eventually(lambda: not rig.board.vending, what="motor stopped")
        assert len(await rig.events("cabinet.refused")) == 0
        assert rig.board.truth.total_dropped() == 1


async def test_lost_and_unregistered_cards_are_refused_with_their_reason(tmp_path: Path) -> None:
    async with box_rig(tmp_path) as rig:
        assert rig.reader is not None
        rig.reader.swipe(LOST)
        await eventually(lambda: rig.board.display[0] == "此卡已挂失", what="lost message")
        rig.reader.swipe(STRANGER)
        await eventually(lambda: rig.board.display[0] == "此卡未登记", what="unknown message")
        refusals = await rig.wait_event("cabinet.refused", 2)
        assert [r.payload.reason for r in refusals] == ["lost", "unregistered"]
        assert rig.board.truth.total_dropped() == 0


async def test_a_jam_costs_no_quota_and_the_other_slot_of_the_product_delivers(
    tmp_path: Path,
) -> None:
    async with box_rig(tmp_path, slots=[("condom", 3), ("condom", 3)]) as rig:
        assert rig.reader is not None
        rig.board.jam(1)
        rig.reader.swipe(VILLAGER)
        (dispense,) = await rig.wait_event("cabinet.dispense")
        (failed,) = await rig.events("cabinet.vend_failed")
        assert (failed.payload.slot, failed.payload.reason, failed.payload.next_slot) == (
            1,
            "jammed",
            2,
        )
        assert dispense.payload.slot == 2
        states = [(e.payload.slot, e.payload.state) for e in await rig.events("cabinet.slot")]
        assert (1, "faulty") in states
        usage = await rig.outbox.transact(
            lambda u: store.uses(
                u, card(VILLAGER), "condoms", dispense.occurred_at.replace(year=2000)
            )
        )
        assert len(usage) == 1


async def test_an_empty_spiral_fails_and_the_take_is_not_charged(tmp_path: Path) -> None:
    async with box_rig(tmp_path) as rig:
        assert rig.reader is not None
        rig.board.empty(1)  # the books say 5; the spiral turns and nothing falls
        rig.reader.swipe(VILLAGER)
        (failed,) = await rig.wait_event("cabinet.vend_failed")
        assert failed.payload.reason == "no_drop"
        await eventually(lambda: rig.board.display[0] == "出货失败", what="failure message")
        await eventually(lambda: not rig.board.vending, what="motor stopped")
        rig.reader.swipe(NEIGHBOUR)
        (refused,) = await rig.wait_event("cabinet.refused")
        assert refused.payload.reason == "empty"  # the only slot is faulty now
        assert await rig.events("cabinet.dispense") == []


async def test_power_lost_mid_vend_is_reconciled_without_a_second_vend(tmp_path: Path) -> None:
    async with box_rig(tmp_path) as rig:
        assert rig.reader is not None
        rig.board.power_loss_mid_vend()
        rig.reader.swipe(VILLAGER)
        await eventually(lambda: not rig.board.powered, what="power gone mid-vend")
        # The agent lost its power too: it restarts while the board comes back.
        rig.board.power_on()
        await rig.restart_agent()
        (unknown,) = await rig.wait_event("cabinet.vend_unknown")
        assert (unknown.payload.reason, unknown.payload.recovered) == ("interrupted", True)
        assert len(rig.board.truth.vends) == 1
        assert await rig.events("cabinet.dispense") == []
        slots = [e.payload for e in await rig.events("cabinet.slot")]
        assert slots[-1].state == "count_needed"
        # The villager was not charged: a swipe now vends.
        await eventually(lambda: rig.board.memory.last_vend_seq > 0, what="board memory")
        rig.later()
        rig.reader.swipe(VILLAGER)
        await rig.wait_event("cabinet.dispense")
        assert len(rig.board.truth.vends) == 2


async def test_an_agent_restarted_mid_vend_records_what_the_board_did(tmp_path: Path) -> None:
    async with box_rig(tmp_path, turn_s=1.5) as rig:
        assert rig.reader is not None
        rig.reader.swipe(VILLAGER)
        await eventually(lambda: rig.board.vending, what="motor running")
        await rig.restart_agent()
        (dispense,) = await rig.wait_event("cabinet.dispense")
        assert dispense.payload.recovered is True
        assert len(rig.board.truth.vends) == 1
        assert rig.board.truth.total_dropped() == 1


async def test_a_technician_restocks_an_order_through_the_door(tmp_path: Path) -> None:
    async with box_rig(tmp_path) as rig:
        assert rig.reader is not None
        from datetime import UTC, date, datetime

        from edge_agent.wire import RestockOrderCommand

        order = RestockOrderCommand(
            order_id="R-1",
            box="box-1",
            slot=1,
            product="condom",
            batch="B9",
            expiry=date(2030, 1, 31),
            quantity=10,
        )
        await rig.outbox.transact(lambda u: store.store_order(u, order, datetime.now(UTC)))
        rig.reader.swipe(TECHNICIAN)
        await eventually(lambda: rig.board.unlocked, what="door unlocked")
        await eventually(lambda: rig.board.display[0] == "请补1号槽", what="order shown")
        assert rig.board.door_open()
        await rig.wait_event("cabinet.door")
        rig.board.door_close()
        await eventually(lambda: rig.board.display[0] == "补货已完成?", what="confirm asked")
        rig.board.press("ok")
        (restock,) = [
            e for e in await rig.wait_event("cabinet.restock", 2) if e.payload.source == "door"
        ]
        assert (restock.payload.order_id, restock.payload.quantity) == ("R-1", 10)
        assert restock.payload.technician == card(TECHNICIAN)
        assert rig.service.books_slots()[1].count == 15
        assert await rig.events("cabinet.tamper") == []


async def test_a_door_forced_without_a_card_raises_tamper(tmp_path: Path) -> None:
    async with box_rig(tmp_path) as rig:
        assert rig.board.door_open(force=True)
        (tamper,) = await rig.wait_event("cabinet.tamper")
        assert tamper.payload.reason == "door_without_card"
        assert rig.reader is not None
        rig.reader.swipe(VILLAGER)
        await eventually(lambda: rig.board.display[0] == "维护中", what="service message")
        assert await rig.events("cabinet.dispense") == []


async def test_an_open_box_vends_on_a_button_paced(tmp_path: Path) -> None:
    async with box_rig(tmp_path, mode="open", pause_s=60) as rig:
        assert rig.board.press(1)
        (dispense,) = await rig.wait_event("cabinet.dispense")
        assert (dispense.payload.mode, dispense.payload.card) == ("open", None)
        await eventually(lambda: not rig.board.vending, what="motor stopped")
        assert rig.board.press(1)
        (refused,) = await rig.wait_event("cabinet.refused")
        assert refused.payload.reason == "pause"
        assert rig.board.truth.total_dropped() == 1


async def test_two_orders_for_one_slot_load_one_behind_the_other(tmp_path: Path) -> None:
    from datetime import UTC, date, datetime

    from edge_agent.wire import RestockOrderCommand

    async with box_rig(tmp_path) as rig:
        assert rig.reader is not None
        for n, (batch, quantity) in enumerate([("B7", 3), ("B8", 4)]):
            order = RestockOrderCommand(
                order_id=f"R-{n}",
                box="box-1",
                slot=1,
                product="condom",
                batch=batch,
                expiry=date(2030, 1, 31),
                quantity=quantity,
            )
            now = datetime.now(UTC)
            await rig.outbox.transact(partial(store.store_order, order=order, received_at=now))
        rig.reader.swipe(TECHNICIAN)
        await eventually(lambda: rig.board.unlocked, what="door unlocked")
        assert rig.board.door_open()
        await rig.wait_event("cabinet.door")
        rig.board.door_close()
        await eventually(lambda: rig.board.display[0] == "补货已完成?", what="confirm asked")
        rig.board.press("ok")
        await rig.wait_event("cabinet.restock", 3)  # the rig's own load, then the two orders
        slot = rig.service.books_slots()[1]
        assert (slot.count, [lot.batch for lot in slot.lots]) == (12, ["B1", "B7", "B8"])
        kept = await rig.outbox.transact(lambda u: store.load_slots(u, rig.box))
        assert kept[0].count == 12


async def test_a_display_after_a_restart_is_not_taken_for_a_repeat(tmp_path: Path) -> None:
    async with box_rig(tmp_path) as rig:
        assert rig.reader is not None
        rig.reader.swipe(VILLAGER)
        await rig.wait_event("cabinet.dispense")
        await eventually(lambda: rig.board.display[1].endswith("可领"), what="take message")
        # The agent's last request before it stops is a display two past its last vend, the
        # number its first display after the restart gets (the STATUS takes the one between).
        vend = rig.board.memory.last_vend_seq
        rig.service.board.restore_seq(vend + 1)
        await rig.service.board.display(0, "旧的一行")
        await rig.restart_agent()
        welcome = ["请刷卡领取", "免费 按需取用"]
        await eventually(lambda: rig.board.display == welcome, what="welcome")


async def test_a_vend_refused_for_an_open_door_faults_no_slot_and_costs_nothing(
    tmp_path: Path,
) -> None:
    async with box_rig(tmp_path) as rig:
        assert rig.reader is not None
        rig.board.door_is_open = True  # its event lost: the agent does not know
        rig.reader.swipe(VILLAGER)
        (failed,) = await rig.wait_event("cabinet.vend_failed")
        assert (failed.payload.reason, failed.payload.next_slot) == ("door_open", None)
        await eventually(lambda: rig.board.display[0] == "设备维护中", what="door message")
        reports = [(e.payload.previous, e.payload.state) for e in await rig.events("cabinet.slot")]
        assert reports == [(None, "empty"), ("empty", "ok")], "new, then loaded; never faulty"
        rig.board.door_is_open = False
        rig.later()
        rig.reader.swipe(VILLAGER)
        await rig.wait_event("cabinet.dispense")


async def test_a_door_open_at_start_is_taken_up_from_the_status_without_tamper(
    tmp_path: Path,
) -> None:
    async with box_rig(tmp_path) as rig:
        assert rig.reader is not None
        rig.board.power_off()
        rig.board.door_open(force=True)  # unpowered: no event
        rig.board.power_on()
        await rig.restart_agent()
        (door,) = await rig.wait_event("cabinet.door")
        assert (door.payload.state, door.payload.technician) == ("opened", None)
        rig.later()
        rig.reader.swipe(VILLAGER)
        rig.board.door_close()
        await rig.wait_event("cabinet.door", 2)
        assert await rig.events("cabinet.tamper") == []
        assert await rig.events("cabinet.dispense") == []


async def test_a_result_the_board_does_not_answer_is_not_given_up(
    tmp_path: Path,
) -> None:
    async with box_rig(tmp_path, turn_s=4.0) as rig:
        assert rig.reader is not None
        rig.reader.swipe(VILLAGER)
        await eventually(lambda: rig.board.vending, what="motor running")
        rig.board.line.pause()  # the board hears nothing, but still sends what it has to say
        rig.later(60)  # long past the time a result is due: the agent asks RESULT, unanswered
        await eventually(lambda: rig.service._vend_deadline > rig.monotonic(), what="asked")
        assert rig.service._vend is not None, "still under way: not given up"
        assert await rig.events("cabinet.vend_unknown") == []
        rig.board.line.resume()
        (dispense,) = await rig.wait_event("cabinet.dispense")
        assert dispense.payload.slot == 1
        assert await rig.events("cabinet.vend_unknown") == []
        assert rig.board.truth.total_dropped() == 1


async def test_a_new_slot_is_reported_once_so_the_county_can_order_it_filled(
    tmp_path: Path,
) -> None:
    async with box_rig(tmp_path, slots=[("condom", 0), ("condom", 0)], stock=False) as rig:
        reports = [e.payload for e in await rig.wait_event("cabinet.slot", 2)]
        assert [(r.slot, r.previous, r.state, r.count) for r in reports] == [
            (1, None, "empty", 0),
            (2, None, "empty", 0),
        ]
        await rig.restart_agent()
        await rig.restock(1, 3)
        states = [(e.payload.slot, e.payload.state) for e in await rig.events("cabinet.slot")]
        assert states == [(1, "empty"), (2, "empty"), (1, "ok")], "reported once, not per start"


async def test_slots_an_older_agent_stored_unreported_are_reported_after_the_upgrade(
    tmp_path: Path,
) -> None:
    from edge_agent.cabinet import stock
    from edge_agent.outbox import AsyncOutbox, DomainSchema

    path = tmp_path / "outbox.db"
    old = AsyncOutbox(
        path, "agent-1", schemas=[DomainSchema("cabinet", store.SCHEMA.migrations[:1])]
    )
    await old.open()
    await old.transact(
        lambda u: store.save_slot(u, stock.Slot("box-1", 1, "condom", 20, reported="empty"))
    )
    await old.close()
    new = AsyncOutbox(path, "agent-1", schemas=[store.SCHEMA])
    await new.open()
    rows = await new.transact(lambda u: list(u.execute("SELECT slot, reported FROM cabinet_slots")))
    await new.close()
    assert rows == [(1, "")], "to be reported at the next start (Books.first_reports)"
