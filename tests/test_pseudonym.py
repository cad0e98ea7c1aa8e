"""Card pseudonyms: the published test vectors, normalisation, ages, and the key file."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.pseudonym import (
    CardKey,
    PseudonymError,
    age_on,
    birth_date,
    load_key,
    normalise_id_number,
    normalise_uid,
    of_id_number,
    of_uid,
    pseudonym,
)

SECRET = bytes(range(32))
KEY = CardKey(SECRET)
UID_VECTOR = "0be50fda92a8dac378114f45c1ea794bb4338f99b907f405108359bb352debd4"
ID_VECTOR = "1432249b8cdc8f7da039d3299cf4968d95fc2da8de0a9e031a09749ebf4ce3b8"
ID_NUMBER = "11010519491231002X"


def with_check(first17: str) -> str:
    """An ID number with its ISO 7064 MOD 11-2 check character, computed here independently."""
    weights = [pow(2, 17 - i, 11) for i in range(17)]
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


def wrong_check(number: str) -> str:
    return number[:17] + ("0" if number[17] != "0" else "1")


def born(day: date) -> str:
    return with_check(f"110105{day:%Y%m%d}001")


# -- the test vectors of docs/protocol.md ----------------------------------------------------


def test_vectors() -> None:
    assert of_uid(KEY, "04A1B2C3") == UID_VECTOR
    assert of_id_number(KEY, ID_NUMBER) == ID_VECTOR
    assert KEY.key_id == "37656362"


def test_vectors_from_the_definition() -> None:
    """What a vendor computes from docs/protocol.md alone, without this module."""
    for message, expected in [
        (b"fp-card-v1|ic|04A1B2C3", UID_VECTOR),
        (b"fp-card-v1|id|11010519491231002X", ID_VECTOR),
    ]:
        assert hmac.new(SECRET, message, hashlib.sha256).hexdigest() == expected
    assert hashlib.sha256(b"fp-card-key-id|" + SECRET).hexdigest()[:8] == KEY.key_id


def test_the_document_states_the_vectors() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = doc.split("## Card pseudonyms", 1)[1].split("\n## ", 1)[0]
    for text in (UID_VECTOR, ID_VECTOR, KEY.key_id, "fp-card-v1\\|ic\\|04A1B2C3", ID_NUMBER):
        assert text in section


def test_check_character_helper_agrees_with_the_vector() -> None:
    assert with_check(ID_NUMBER[:17]) == ID_NUMBER


# -- normalisation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uid",
    [
        "04A1B2C3",
        "04a1b2c3",
        "04:A1:B2:C3",
        "04 a1 b2 c3",
        "04-A1-B2-C3",
        "  04A1B2C3\n",
        bytes.fromhex("04A1B2C3"),
    ],
)
def test_one_uid_written_many_ways_is_one_pseudonym(uid: str | bytes) -> None:
    assert normalise_uid(uid) == "04A1B2C3"
    assert of_uid(KEY, uid) == UID_VECTOR


@pytest.mark.parametrize("size", [4, 7, 8, 10])
def test_uid_lengths_cards_have(size: int) -> None:
    raw = bytes(range(1, size + 1))
    assert normalise_uid(raw) == raw.hex().upper()
    assert normalise_uid(raw.hex()) == raw.hex().upper()


@pytest.mark.parametrize("uid", [b"", b"\x04\xa1\xb2", bytes(5), bytes(6), bytes(9), bytes(11)])
def test_uid_lengths_no_card_has_are_refused(uid: bytes) -> None:
    with pytest.raises(PseudonymError, match="4, 7, 8 or 10 bytes"):
        normalise_uid(uid)
    with pytest.raises(PseudonymError):
        normalise_uid(uid.hex())


@pytest.mark.parametrize("uid", ["04A1B2C", "04A1B2CG", "0x04A1B2C3", "04A1B2C3;", "٠٤A1B2C3"])
def test_uid_that_is_not_hex_is_refused_without_showing_it(uid: str) -> None:
    with pytest.raises(PseudonymError) as caught:
        normalise_uid(uid)
    assert "A1B2" not in str(caught.value)


@given(st.sampled_from([4, 7, 8, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_uid_pseudonym_is_the_definition(uid: bytes) -> None:
    message = b"fp-card-v1|ic|" + uid.hex().upper().encode()
    expected = hmac.new(SECRET, message, hashlib.sha256).hexdigest()
    assert of_uid(KEY, uid) == expected
    assert of_uid(KEY, uid.hex()) == expected
    assert of_uid(KEY, ":".join(f"{b:02x}" for b in uid)) == expected


def test_id_number_normalisation() -> None:
    assert normalise_id_number("11010519491231002x") == ID_NUMBER
    assert normalise_id_number(f" {ID_NUMBER}\r\n") == ID_NUMBER
    assert of_id_number(KEY, "11010519491231002x") == ID_VECTOR


@pytest.mark.parametrize(
    "number",
    [
        wrong_check(ID_NUMBER),
        "110105194912310021",
        "11010519491231002",  # 17
        "11010519491231002X1",  # 19
        "1101051949123100X2",  # X in the body
        "11010519491231002Y",
        "",
        "١١٠١٠٥١٩٤٩١٢٣١٠٠٢X",  # Arabic-Indic digits are not ID digits
    ],
)
def test_bad_id_numbers_are_refused_without_showing_them(number: str) -> None:
    with pytest.raises(PseudonymError) as caught:
        normalise_id_number(number)
    assert "19491231" not in str(caught.value)
    assert "110105" not in str(caught.value)
    with pytest.raises(PseudonymError):
        of_id_number(KEY, number)


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_exactly_one_check_character_is_right(first17: str) -> None:
    good = with_check(first17)
    assert normalise_id_number(good) == good
    for c in "0123456789X":
        if c != good[17]:
            with pytest.raises(PseudonymError, match="check character"):
                normalise_id_number(first17 + c)


def test_kinds_and_keys_separate_pseudonyms() -> None:
    """A UID and an ID number with the same characters never share a pseudonym, nor one card
    under two keys."""
    assert pseudonym(KEY, "ic", "ABCD") != pseudonym(KEY, "id", "ABCD")
    other = CardKey(bytes(32))
    assert of_uid(other, "04A1B2C3") != UID_VECTOR
    assert len(of_uid(other, "04A1B2C3")) == 64


# -- ages ------------------------------------------------------------------------------------


def test_birth_date_of_the_vector() -> None:
    assert birth_date(ID_NUMBER) == date(1949, 12, 31)


@pytest.mark.parametrize(
    ("birthday", "today", "age"),
    [
        (date(1949, 12, 31), date(2024, 12, 30), 74),
        (date(1949, 12, 31), date(2024, 12, 31), 75),
        (date(1949, 12, 31), date(2025, 1, 1), 75),
        (date(2006, 6, 15), date(2024, 6, 14), 17),
        (date(2006, 6, 15), date(2024, 6, 15), 18),
        (date(2024, 6, 15), date(2024, 6, 15), 0),
        # Born on 29 February: a year is completed on 1 March in a common year.
        (date(2000, 2, 29), date(2018, 2, 28), 17),
        (date(2000, 2, 29), date(2018, 3, 1), 18),
        (date(2000, 2, 29), date(2020, 2, 28), 19),
        (date(2000, 2, 29), date(2020, 2, 29), 20),
        (date(2000, 2, 29), date(2021, 2, 28), 20),
        (date(2000, 2, 29), date(2021, 3, 1), 21),
    ],
)
def test_age_on(birthday: date, today: date, age: int) -> None:
    assert age_on(born(birthday), today) == age


@given(st.dates(min_value=date(1900, 1, 1)), st.dates(min_value=date(1900, 1, 1)))
def test_age_is_completed_years(birthday: date, today: date) -> None:
    number = born(birthday)
    if birthday > today:
        with pytest.raises(PseudonymError, match="after today"):
            age_on(number, today)
        return
    age = age_on(number, today)
    assert age >= 0
    # The age-th anniversary (29 February → 1 March in a common year) is on or before today.
    year = birthday.year + age
    try:
        anniversary = birthday.replace(year=year)
    except ValueError:
        anniversary = date(year, 3, 1)
    assert anniversary <= today
    try:
        following = birthday.replace(year=year + 1)
    except ValueError:
        following = date(year + 1, 3, 1)
    assert following > today


@pytest.mark.parametrize("yyyymmdd", ["19491331", "19490230", "19990229", "00000101", "19490100"])
def test_impossible_birth_dates_are_refused(yyyymmdd: str) -> None:
    number = with_check(f"110105{yyyymmdd}002")
    assert normalise_id_number(number) == number  # the check character alone cannot tell
    with pytest.raises(PseudonymError, match="birth date"):
        birth_date(number)
    with pytest.raises(PseudonymError, match="birth date"):
        age_on(number, date(2024, 1, 1))


def test_age_of_a_misread_number_is_refused() -> None:
    with pytest.raises(PseudonymError, match="check character"):
        age_on(wrong_check(ID_NUMBER), date(2024, 1, 1))


# -- the key -----------------------------------------------------------------------------------


def write_key(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize(
    "text", [SECRET.hex(), SECRET.hex().upper() + "\n", f"  {SECRET.hex()}\r\n"]
)
def test_load_key(tmp_path: Path, text: str) -> None:
    key = load_key(write_key(tmp_path / "card.key", text))
    assert key == KEY
    assert key.key_id == "37656362"


@pytest.mark.parametrize(
    "text",
    [
        "",
        SECRET.hex()[:-1],  # 63 digits
        SECRET.hex() + "0",  # 65
        SECRET.hex()[:-1] + "g",
        SECRET.hex()[:32] + " " + SECRET.hex()[32:],
        SECRET.hex() + "\n" + SECRET.hex(),
        SECRET.hex() + "\n" + " " * 1000,
        "0x" + SECRET.hex(),
    ],
)
def test_bad_key_file_is_refused_without_showing_the_key(tmp_path: Path, text: str) -> None:
    path = write_key(tmp_path / "card.key", text)
    with pytest.raises(PseudonymError, match="64 hex digits") as caught:
        load_key(path)
    message = str(caught.value)
    assert str(path) in message
    assert SECRET.hex()[:16] not in message.lower()
    assert SECRET.hex()[-16:] not in message.lower()


def test_key_file_not_ascii(tmp_path: Path) -> None:
    path = write_key(tmp_path / "card.key", SECRET.hex()[:60].encode() + "ÿé".encode())
    with pytest.raises(PseudonymError, match="UnicodeDecodeError") as caught:
        load_key(path)
    assert SECRET.hex()[:16] not in str(caught.value)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(PseudonymError, match=r"cannot read card key file .*FileNotFoundError"):
        load_key(tmp_path / "absent.key")


def test_key_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(PseudonymError, match="cannot read card key file"):
        load_key(tmp_path)


def test_card_key_hides_its_secret() -> None:
    for shown in (repr(KEY), str(KEY), f"{KEY}", f"{KEY!r}"):
        assert shown == "CardKey(key_id='37656362')"
        assert SECRET.hex() not in shown
        assert repr(SECRET) not in shown


@pytest.mark.parametrize("secret", [b"", bytes(31), bytes(33)])
def test_card_key_has_32_bytes(secret: bytes) -> None:
    with pytest.raises(PseudonymError, match="32 bytes"):
        CardKey(secret)


def test_card_key_is_bytes() -> None:
    with pytest.raises(PseudonymError, match="bytes"):
        CardKey(SECRET.hex()[:32])  # type: ignore[arg-type]
