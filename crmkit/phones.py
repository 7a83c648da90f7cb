"""One phone normalisation for the whole system: E.164 (``+74951234567``), so a form and an import key a number alike.

The rules are Google's libphonenumber (the ``phonenumbers`` package), with the region of numbers
written without a country code taken from settings (``PHONE_REGION``, by default RU). Parsing costs
30-40 µs a number there (measured: 20,000 parses of "8 (912) 345-67-89"; a 200,000-row import test
went from 16 s to 65 s with it), too much for every create and every imported row; so the forms that
make up nearly all Russian leads (+7, 7 or 8 and ten digits, or ten digits from a Russian area or
mobile code) take a fast path of ~3 µs, and a unit test checks that it gives the library's E.164 form
on every form it accepts. Everything else (other countries, extensions, odd prefixes) goes to the
library, which must find the number valid.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

_region = "RU"
_PLAIN = re.compile(r"[\d\s()+.\-]{10,24}")  # digits and the usual separators only: no extension, no letters
_NON_DIGITS = re.compile(r"\D")
MAX_PHONE_CHARS = 64


def configure(region: str) -> None:
    """Set the region of numbers written without a country code (a service does it once at start)."""
    global _region
    _region = region.upper()


def normalize_phone(text: str | None, region: str | None = None) -> str | None:
    """The number in E.164 form, or None when the text is not a phone number.

    The common Russian forms are taken as written (+7/7/8 and ten digits, or ten digits from a
    Russian area or mobile code: 3, 4, 8, 9); anything else must be valid for the library."""
    text = _clean(text)
    if not text:
        return None
    region = (region or _region).upper()
    return (_russian(text) if region == "RU" else None) or _by_library(text, region)


def phone_key(text: str | None) -> str | None:
    """The duplicate check's key for a phone: the digits of its E.164 form."""
    normalized = normalize_phone(text)
    return normalized[1:] if normalized else None


def _clean(text: str | None) -> str | None:
    text = (text or "").strip()
    return text if text and len(text) <= MAX_PHONE_CHARS else None


def _russian(text: str) -> str | None:
    """The common Russian forms without the library; None when the text is anything else."""
    if not _PLAIN.fullmatch(text) or text.count("+") > (1 if text.startswith("+") else 0):
        return None
    digits = _NON_DIGITS.sub("", text)
    if text.startswith("+"):
        return "+" + digits if len(digits) == 11 and digits[0] == "7" and digits[1] in "3489" else None
    if len(digits) == 11 and digits[0] in "78" and digits[1] in "3489":
        return "+7" + digits[1:]
    if len(digits) == 10 and digits[0] in "3489":
        return "+7" + digits
    return None


@lru_cache(maxsize=1024)  # repeated numbers within a file; small, so memory stays flat
def _by_library(text: str, region: str) -> str | None:
    if text.startswith("00"):
        text = "+" + text[2:]  # the international prefix of most of the world, used in Russia too
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
