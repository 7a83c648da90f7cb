"""Which addresses a webhook may be connected to, from one resolution the test controls (no network)."""

from __future__ import annotations

import socket

import httpcore
import pytest

from services.leads.actions.network import CheckedConnections, Permanent


def _resolver(answers: dict[str, list[str]]):
    async def resolve(host: str, port: int):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    return resolve


DNS = _resolver({
    "erp.example.ru": ["93.184.215.14", "93.184.215.15"],
    "half.example.ru": ["93.184.215.14", "10.0.0.7"],
    "mapped.example.ru": ["::ffff:127.0.0.1"],
    "erp.corp": ["10.0.0.7"],
    "127.0.0.1": ["127.0.0.1"],
})


async def test_every_address_of_a_name_is_checked_and_the_checked_ones_are_those_returned():
    connections = CheckedConnections(frozenset(), DNS)
    assert await connections.addresses("erp.example.ru", 443) == ["93.184.215.14", "93.184.215.15"]
    for name, address in (("half.example.ru", "10.0.0.7"), ("mapped.example.ru", "::ffff:127.0.0.1")):
        with pytest.raises(Permanent, match="resolves to a private address") as refused:
            await connections.addresses(name, 443)
        assert address not in str(refused.value)  # the failure event must not map internal names to addresses
    with pytest.raises(Permanent, match="is a private address"):
        await connections.addresses("localhost", 80)
    with pytest.raises(httpcore.ConnectError, match="does not resolve"):
        await connections.addresses("gone.example.ru", 443)


async def test_an_allowed_name_or_address_may_be_private():
    by_name = CheckedConnections(frozenset({"erp.corp"}), DNS)
    assert await by_name.addresses("erp.corp", 8080) == ["10.0.0.7"]
    by_address = CheckedConnections(frozenset({"10.0.0.7:8080"}), DNS)
    assert await by_address.addresses("erp.corp", 8080) == ["10.0.0.7"]
    with pytest.raises(Permanent):
        await by_address.addresses("erp.corp", 9000)  # listed with another port
    assert await CheckedConnections(frozenset({"127.0.0.1"}), DNS).addresses("127.0.0.1", 80) == ["127.0.0.1"]
