"""A webhook receiver on 127.0.0.1 for tests: records each request, answers as told (fail n times, or hold forever)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What the server got, and how it answers: ``fail_first`` 503s per delivery id, or ``hold`` every request."""

    url: str = ""
    fail_first: int = 0
    hold: bool = False
    endless: bool = False  # answer 200 with a body that never ends
    got: list[Received] = field(default_factory=list)
    held: int = 0  # requests waiting now
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _tries: dict[str, int] = field(default_factory=dict)

    def deliveries(self) -> dict[str, list[Received]]:
        found: dict[str, list[Received]] = {}
        for item in self.got:
            found.setdefault(item.event["id"], []).append(item)
        return found

    async def handle(self, request: Request) -> Response:
        item = Received(await request.body(), {k.lower(): v for k, v in request.headers.items()})
        self.got.append(item)
        if self.hold:
            self.held += 1
            try:
                await self.release.wait()
            finally:
                self.held -= 1
        delivery = item.event["id"]
        self._tries[delivery] = self._tries.get(delivery, 0) + 1
        if self._tries[delivery] <= self.fail_first:
            return Response("try later", status_code=503)
        if self.endless:
            return StreamingResponse(_forever(), status_code=200, media_type="text/plain")
        return Response(status_code=204)


async def _forever():
    chunk = b"x" * 65_536
    while True:
        yield chunk
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def webhook_receiver(host: str = "127.0.0.1", port: int = 0, **options) -> AsyncIterator[Receiver]:
    """A receiver on ``host`` (any 127.x.y.z address is this machine's loopback), on a free port unless one is given."""
    receiver = Receiver(**options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    receiver.url = f"http://{host}:{port}/hook"
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield receiver
    finally:
        receiver.release.set()
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()
