"""Capture form keys: kept only as salted scrypt hashes, checked in constant time, a verified key remembered per hash."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from collections import OrderedDict

# scrypt at the usual interactive cost (N=2**14, r=8, p=1: 16 MiB and 37 ms of CPU a check, measured
# by bench/bench_capture_keys.py on the 2-core test machine, where the plain compare it replaces took
# 0.05 us and a remembered key 0.5 us): a stolen database gives no key back without that cost per guess.
# (A keyed HMAC with a server-side pepper would be as cheap as the plain compare, but it adds a secret
# to deploy and rotate, and a leaked pepper leaves weak keys open to fast guessing.)
# A capture POST cannot pay it every time, so a key once verified is remembered (its SHA-256, keyed by
# the stored hash, which changes with the key): a form's later submissions cost a SHA-256 and a
# constant-time compare. Only a wrong key, or a form's first submission in a process, pays scrypt,
# at most _CONCURRENT at once, after the per-address rate limit has counted the request.
_N, _R, _P = 2**14, 8, 1
_LENGTH = 32
_SCHEME = "scrypt"
_REMEMBERED = 10_000  # verified keys kept in memory, least recently used dropped first
_CONCURRENT = 2


def seal(key: str, salt: bytes | None = None) -> str:
    """What is stored for ``key``: ``scrypt$N$r$p$<salt>$<hash>`` (base64), a random salt of its own."""
    salt = salt if salt is not None else os.urandom(16)
    digest = _scrypt(key, salt, _N, _R, _P)
    return "$".join((_SCHEME, str(_N), str(_R), str(_P), _b64(salt), _b64(digest)))


def matches(key: str, sealed: str) -> bool:
    """Whether ``key`` is the one ``sealed`` was made from (the parameters are read from the stored value)."""
    try:
        scheme, n, r, p, salt, digest = sealed.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest)
        found = _scrypt(key, base64.b64decode(salt), int(n), int(r), int(p), len(expected))
    except ValueError:  # a malformed stored value matches nothing
        return False
    return hmac.compare_digest(found, expected)


def _scrypt(key: str, salt: bytes, n: int, r: int, p: int, length: int = _LENGTH) -> bytes:
    return hashlib.scrypt(key.encode(), salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * r * n + 1024 * 1024, dklen=length)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class KeyChecks:
    """Checks submitted keys against stored hashes, remembering the keys it verified (see the note above)."""

    def __init__(self, remembered: int = _REMEMBERED) -> None:
        self._verified: OrderedDict[str, bytes] = OrderedDict()
        self._remembered = remembered
        self._slots = asyncio.Semaphore(_CONCURRENT)

    async def check(self, given: str, sealed: str) -> bool:
        """Whether ``given`` is the key ``sealed`` was made from."""
        fingerprint = hashlib.sha256(given.encode()).digest()
        known = self._verified.get(sealed)
        if known is not None and hmac.compare_digest(known, fingerprint):
            self._verified.move_to_end(sealed)
            return True
        async with self._slots:  # scrypt runs in a thread (it releases the GIL): the event loop goes on meanwhile
            ok = await asyncio.to_thread(matches, given, sealed)
        if ok:
            self._verified[sealed] = fingerprint
            self._verified.move_to_end(sealed)
            while len(self._verified) > self._remembered:
                self._verified.popitem(last=False)
        return ok
