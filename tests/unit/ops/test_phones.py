"""One phone normalisation: the same number keys the same however it is written; the fast path agrees with the library."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from crmkit import phones
from crmkit.phones import normalize_phone, phone_key


@pytest.mark.parametrize("text", ["495 123 45 67", "+7 495 123-45-67", "8 (495) 123-45-67", "74951234567", "+7(495)1234567"])
def test_a_moscow_number_is_one_number_however_written(text):
    # A form sent '495 123 45 67'; the same number from an import was '+74951234567': never matched before.
    assert normalize_phone(text) == "+74951234567"
    assert phone_key(text) == phone_key(normalize_phone(text)) == "74951234567"


def test_mobiles_international_and_refusals():
    assert normalize_phone("8 912 345-67-89") == normalize_phone("9123456789") == "+79123456789"
    assert normalize_phone("+44 20 7946 0958") == "+442079460958"
    assert normalize_phone("+7 912 345 67 89 доб. 12") == "+79123456789"  # the extension is not the number
    for bad in ("12", "", None, "not a phone", "+7 912", "1" * 70, "a@b.c"):
        assert normalize_phone(bad) is None, bad


def test_the_fast_path_gives_what_the_library_gives():
    rng = random.Random(7)
    forms = [
        lambda d: f"+7 {d[:3]} {d[3:6]}-{d[6:8]}-{d[8:]}", lambda d: f"8 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}",
        lambda d: f"7{d}", lambda d: d, lambda d: f"8{d}", lambda d: f"+7{d}", lambda d: f"{d[:3]}.{d[3:6]}.{d[6:]}",
    ]
    checked = 0
    for _ in range(3000):
        digits = str(rng.choice("3489")) + "".join(rng.choice("0123456789") for _ in range(9))
        text = rng.choice(forms)(digits)
        fast = phones._russian(text)
        if fast is not None:
            checked += 1
            # The library's own E.164 form, valid or not (a key needs the form, not the verdict).
            assert fast == phonenumbers.format_number(phonenumbers.parse(text, "RU"), phonenumbers.PhoneNumberFormat.E164), text
            valid = phones._by_library(text, "RU")
            assert valid in (None, fast), text
    assert checked > 2500


def test_the_region_comes_from_settings():
    try:
        phones.configure("GB")
        assert normalize_phone("020 7946 0958") == "+442079460958"
    finally:
        phones.configure("RU")
    assert normalize_phone("020 7946 0958", region="GB") == "+442079460958"
