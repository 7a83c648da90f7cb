"""Stored blobs compressed with zstd (one compressor a process, a frame told apart by its magic number), and JSON blobs."""

from __future__ import annotations

from typing import Any

import orjson
import zstandard
from bson import Binary

# zstd level 1, one compressor for the process (the event loop's thread only): a lead's 1.6 KB blob in 4.2 µs
# where zlib level 1 took 8.4 µs, to the same size (523 against 520 bytes), and read back in 1.9 against 4.4 µs.
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame's first bytes: JSON starts with "{", a zlib stream with 0x78
_COMPRESSOR = zstandard.ZstdCompressor(level=1)
_DECOMPRESSOR = zstandard.ZstdDecompressor()


def compress(raw: bytes) -> bytes:
    return _COMPRESSOR.compress(raw)


def is_compressed(stored: bytes) -> bool:
    """Whether ``stored`` is a zstd frame (a blob written otherwise is its service's to read)."""
    return stored.startswith(_ZSTD_MAGIC)


def decompress(stored: bytes) -> bytes:
    return _DECOMPRESSOR.decompress(stored)


# A JSON blob is compressed above this size: a qualification closing's 3.3 KB go to 1.0 KB (FerretDB 38 -> 17 µs
# a closing inserted, for 8 µs of compressing), where a lead copy's 263 bytes of card fields went to 208 for
# 6.8 µs, and 5.8 to read them back.
_COMPRESSED_ABOVE = 1024


def pack(value: Any) -> Binary:
    """``value`` (JSON values, or what ``model_dump`` gives) as a stored blob: its JSON, compressed when large.

    For fields no query names: FerretDB turns every BSON field into JSON and back on each write and read,
    so a nested document costs it several times one binary field (services/qualification/documents.py and
    services/activity/repository.py give the measurements)."""
    raw = orjson.dumps(value)
    return Binary(compress(raw) if len(raw) > _COMPRESSED_ABOVE else raw)


def unpack(stored: bytes) -> Any:
    """What ``pack`` stored."""
    raw = bytes(stored)
    return orjson.loads(decompress(raw) if is_compressed(raw) else raw)  # else JSON, uncompressed
