"""Which server the services talk to decides their write path (see crmkit.mongo.is_ferretdb)."""

import pytest

from crmkit.mongo import is_ferretdb


class _Db:
    def __init__(self, info: dict) -> None:
        self._info = info

    async def command(self, name: str) -> dict:
        assert name == "buildInfo"
        return self._info


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"version": "7.0.42", "ferretdbVersion": "unknown", "ferretdbFeatures": {}, "ok": 1.0}, True),  # FerretDB 1.x
        ({"version": "7.0.77", "ferretdb": {"version": "v2.2.0"}, "ok": 1.0}, True),  # FerretDB 2.x
        ({"version": "7.0.12", "gitVersion": "abc", "modules": [], "ok": 1.0}, False),  # MongoDB
    ],
)
async def test_ferretdb_is_told_from_mongodb(info, expected):
    assert await is_ferretdb(_Db(info)) is expected
