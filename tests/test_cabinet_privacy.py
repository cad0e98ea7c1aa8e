"""No raw card number or ID number leaves the card reader's line: not into the agent's files,
not into its log (the broker and the server are checked end to end elsewhere)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.cabinet_rig import VILLAGER, box_rig

ID_NUMBER = "11010519491231002X"


def forms_of_uid(uid: str) -> list[bytes]:
    raw = bytes.fromhex(uid)
    return [uid.upper().encode(), uid.lower().encode(), raw, raw[::-1], raw[::-1].hex().encode()]


def forms_of_id(number: str) -> list[bytes]:
    return [number.encode(), number.lower().encode(), number[:17].encode()]


def leaks(root: Path, secrets: list[bytes], text: str) -> list[str]:
    """Where any form of a secret appears among the agent's files and its log."""
    agent_files = [p for p in root.rglob("*") if p.is_file() and p.name.startswith("outbox")]
    assert any(p.name == "outbox.db" for p in agent_files)
    found = [f"{p.name}: {s!r}" for p in agent_files for s in secrets if s in p.read_bytes()]
    found += [f"log: {s!r}" for s in secrets if s in text.encode()]
    return found


@pytest.mark.parametrize("reader_format", ["hex-line", "binary"])
async def test_an_ic_card_number_is_nowhere_in_what_the_agent_keeps_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, reader_format: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with box_rig(tmp_path, reader_format=reader_format) as rig:
        assert rig.reader is not None
        rig.reader.swipe(VILLAGER)
        await rig.wait_event("cabinet.dispense")
        rig.reader.swipe("04FFEE01")  # unregistered: refused, still hashed
        await rig.wait_event("cabinet.refused")
    assert leaks(tmp_path, forms_of_uid(VILLAGER) + forms_of_uid("04FFEE01"), caplog.text) == []


async def test_an_id_number_is_nowhere_in_what_the_agent_keeps_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with box_rig(tmp_path, reader_format="id-line") as rig:
        assert rig.reader is not None
        rig.reader.swipe(ID_NUMBER)  # unknown ID cards count as the default group's
        (dispense,) = await rig.wait_event("cabinet.dispense")
        assert dispense.payload.card is not None
    assert leaks(tmp_path, forms_of_id(ID_NUMBER), caplog.text) == []
