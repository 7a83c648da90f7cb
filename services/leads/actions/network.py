"""Webhook connections go to the very address that was checked: a name resolving elsewhere afterwards (DNS rebinding) is never called."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from services.leads import domain as d

_log = logging.getLogger(__name__)

# (host, port) -> getaddrinfo's answers; the event loop's resolver unless a test gives its own.
Resolve = Callable[[str, int], Awaitable[list[tuple[Any, ...]]]]


class Permanent(Exception):
    """A delivery that no retry can make succeed (its address resolves to a private network)."""


async def _system_resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)


class CheckedConnections(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving each name once, checking every address, and connecting to one of those.

    Before this, the delivery resolved the name to check it and httpx resolved it again to connect,
    so a hostile DNS server could answer a public address first and a private one second. Now the
    only resolution is the one checked. TLS still verifies the certificate against the name: httpcore
    starts TLS on the stream returned here with the URL's host as the server name.
    """

    def __init__(self, private_hosts: frozenset[str], resolve: Resolve = _system_resolve,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._private = private_hosts
        self._resolve = resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def addresses(self, host: str, port: int, timeout: float | None = None) -> list[str]:
        """The addresses ``host`` may be called at; Permanent when it names or resolves to a private one not allowed."""
        allowed_name = d.host_allowed(host, port, self._private)
        if d.is_private_host(host) and not allowed_name:
            raise Permanent(f"{host} is a private address and not in LEADS_WEBHOOK_ALLOWED_PRIVATE_HOSTS")
        try:
            async with asyncio.timeout(timeout):  # the request's connect time limit covers the lookup too
                infos = await self._resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"{host} did not resolve within {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve ({exc})") from exc
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not found:
            raise httpcore.ConnectError(f"{host} does not resolve")
        for address in found:
            if not allowed_name and d.is_private_host(address) and not d.host_allowed(address, port, self._private):
                # The address goes to the operator's log only: the failure event reaches whoever configured
                # the webhook, and naming it would map the internal network's names to its addresses.
                _log.warning("webhook host %s resolves to the private address %s; not called", host, address)
                raise Permanent(f"{host} resolves to a private address (not in LEADS_WEBHOOK_ALLOWED_PRIVATE_HOSTS); not called")
        return found

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for address in await self.addresses(host, port, timeout):
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # the name's next address, as a client trying each in turn does
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are not posted over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (its request and error mapping), its connection pool connecting through ``backend``."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        # httpx 0.28 takes no network backend, httpcore's pool does: the pool httpx made is replaced by
        # the same pool over ``backend``. If a later httpx stopped using it, webhooks to a name would be
        # refused or sent to the wrong address and tests/integration/test_stage_actions.py would fail.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


def webhook_client(private_hosts: frozenset[str], timeout_s: float, concurrency: int,
                   resolve: Resolve = _system_resolve) -> httpx.AsyncClient:
    """The client webhooks are posted with: checked connections, no redirects, no proxy from the environment."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = _CheckedTransport(CheckedConnections(private_hosts, resolve), limits)
    # A client given its transport reads no HTTP(S)_PROXY: the address checked is the one connected to.
    return httpx.AsyncClient(transport=transport, timeout=timeout_s, follow_redirects=False)
