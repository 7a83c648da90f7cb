"""The fast name-based UUID is byte for byte the standard library's."""

from __future__ import annotations

import random
import uuid

from crmkit.ids import uuid5


def test_uuid5_equals_the_standard_library() -> None:
    rng = random.Random(7)
    alphabet = "abcXYZ019 \x1f:/-Жжё漢😀"
    names = ["", "a", "\x1f", *("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 80))) for _ in range(2000))]
    for namespace in (uuid.NAMESPACE_DNS, uuid.UUID("6f1b8a52-3c1e-4f7e-9a51-0d6c8e2b7a10"), uuid.uuid4()):
        for name in names:
            assert uuid5(namespace, name) == str(uuid.uuid5(namespace, name)), name
