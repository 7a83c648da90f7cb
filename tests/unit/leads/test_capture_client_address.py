"""Which address a capture submission counts against for the rate limit, with and without a trusted proxy."""

from __future__ import annotations

from starlette.requests import Request

from services.leads.capture.api import client_address


def _request(*forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "method": "POST", "path": "/capture/f", "headers": headers, "client": ("203.0.113.9", 5000)})


def test_the_peer_counts_unless_the_proxy_is_trusted():
    assert client_address(_request("198.51.100.1"), trust_forwarded=False) == "203.0.113.9"
    assert client_address(_request(), trust_forwarded=True) == "203.0.113.9"


def test_behind_a_proxy_the_address_it_appended_counts_not_what_the_client_sent():
    # The client sent "1.2.3.4" itself; the proxy appended the address it saw.
    assert client_address(_request("1.2.3.4, 198.51.100.1"), trust_forwarded=True) == "198.51.100.1"
    assert client_address(_request("1.2.3.4", "198.51.100.1"), trust_forwarded=True) == "198.51.100.1"  # two header lines
    assert client_address(_request("198.51.100.1"), trust_forwarded=True) == "198.51.100.1"
    assert client_address(_request(" , "), trust_forwarded=True) == "203.0.113.9"
