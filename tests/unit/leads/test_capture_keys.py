"""Capture form keys: sealed with a salt of their own, matched only by the key, a verified key remembered by its hash."""

from __future__ import annotations

from unittest import mock

from services.leads.capture import keys

KEY = "k3y-for-the-shop-server"


def test_a_sealed_key_holds_no_trace_of_the_key_and_matches_only_it():
    one, two = keys.seal(KEY), keys.seal(KEY)
    assert one != two  # a salt of its own: equal keys do not show as equal hashes
    assert KEY not in one and KEY.encode().hex() not in one
    assert one.startswith("scrypt$16384$8$1$")
    assert keys.matches(KEY, one) and keys.matches(KEY, two)
    assert not keys.matches(KEY + "x", one) and not keys.matches(KEY[:-1], one) and not keys.matches("", one)
    assert not keys.matches(KEY, "plain-text-stored-by-mistake") and not keys.matches(KEY, "scrypt$x$8$1$AA==$AA==")


async def test_a_verified_key_is_remembered_and_a_wrong_one_never_is():
    sealed = keys.seal(KEY)
    checks = keys.KeyChecks()
    with mock.patch.object(keys, "matches", wraps=keys.matches) as scrypt_runs:
        assert await checks.check(KEY, sealed)
        assert await checks.check(KEY, sealed) and await checks.check(KEY, sealed)
        assert scrypt_runs.call_count == 1  # the later submissions cost a SHA-256, not scrypt
        assert not await checks.check("wrong-key-of-the-same-length!", sealed)
        assert not await checks.check("wrong-key-of-the-same-length!", sealed)
        assert scrypt_runs.call_count == 3  # a wrong key is checked every time
        other = keys.seal(KEY)  # the form's key set again: a new hash, checked afresh
        assert await checks.check(KEY, other)
        assert scrypt_runs.call_count == 4


async def test_the_remembered_keys_are_bounded():
    checks = keys.KeyChecks(remembered=2)
    sealed = [keys.seal(f"{KEY}-{i}") for i in range(3)]
    for i, value in enumerate(sealed):
        assert await checks.check(f"{KEY}-{i}", value)
    with mock.patch.object(keys, "matches", wraps=keys.matches) as scrypt_runs:
        assert await checks.check(f"{KEY}-2", sealed[2]) and await checks.check(f"{KEY}-1", sealed[1])
        assert scrypt_runs.call_count == 0
        assert await checks.check(f"{KEY}-0", sealed[0])  # the oldest was dropped
        assert scrypt_runs.call_count == 1
