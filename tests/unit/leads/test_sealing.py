"""Webhook secrets sealed at rest: sealed with the first key, opened with any, rotated, and refused clearly."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from services.leads.actions.sealing import SEALED, Sealer, SecretUnreadable

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_a_secret_is_sealed_with_the_first_key_and_opened_with_any():
    sealer = Sealer([OLD])
    stored = sealer.seal("whsec-0123456789abcdef")
    assert stored.startswith(SEALED) and "whsec" not in stored
    assert sealer.open(stored) == "whsec-0123456789abcdef"
    assert Sealer([NEW, OLD]).open(stored) == "whsec-0123456789abcdef"
    assert sealer.seal("whsec-0123456789abcdef") != stored  # a fresh nonce each time: equal secrets do not show


def test_without_keys_secrets_stay_as_given_and_older_plain_ones_still_open():
    assert Sealer().seal("plain-secret-value") == "plain-secret-value"
    assert Sealer([OLD]).open("plain-secret-value") == "plain-secret-value"
    assert Sealer().seal(None) is None and Sealer([OLD]).open(None) is None


def test_reseal_seals_plain_rotates_older_and_leaves_current():
    rotating = Sealer([NEW, OLD])
    assert Sealer([NEW]).open(rotating.reseal("plain-secret-value")) == "plain-secret-value"
    rotated = rotating.reseal(Sealer([OLD]).seal("plain-secret-value"))
    assert Sealer([NEW]).open(rotated) == "plain-secret-value"
    assert rotating.reseal(rotated) is None
    assert Sealer().reseal("plain-secret-value") is None  # no keys: nothing to seal with


def test_a_secret_no_key_opens_is_refused_with_what_to_do():
    stored = Sealer([OLD]).seal("plain-secret-value")
    with pytest.raises(SecretUnreadable, match="keep the key it was sealed with"):
        Sealer([NEW]).open(stored)
    with pytest.raises(SecretUnreadable, match="LEADS_SECRETS_KEYS is empty"):
        Sealer().open(stored)
    with pytest.raises(SecretUnreadable):
        Sealer([NEW]).reseal(stored)  # never rewritten with a key that cannot read it
    with pytest.raises(ValueError, match="32 bytes of url-safe base64"):
        Sealer(["not-a-key"])
