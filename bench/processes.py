"""Service processes for the benchmarks: started as ``python -m services.<name>``, stopped together."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(name: str, settings: dict[str, str], cwd: str | None = None) -> subprocess.Popen:
    """``services.<name>`` with ``settings`` as ``<NAME>_<KEY>`` environment variables and a free HTTP port
    (``cwd``: another source tree's copy of the service, e.g. the code before a change for an A/B run)."""
    values = {"HTTP_PORT": str(free_port()), "LOG_LEVEL": "WARNING", **settings}
    env = {**os.environ, **{f"{name.upper()}_{key}": value for key, value in values.items()}}
    return subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=cwd or ROOT, env=env, stdout=subprocess.DEVNULL)


def use_local_stack_credentials(stack) -> None:
    """Every client of a benchmark connects as the local stack's super user: the shared KAFKA_* variables
    for settings and service processes, the test helpers' registry for raw clients."""
    from tests.support import register_kafka

    auth = stack.kafka.client_settings()
    os.environ.update({
        "KAFKA_SASL_USERNAME": auth.kafka_sasl_username,
        "KAFKA_SASL_PASSWORD": auth.kafka_sasl_password.get_secret_value(),
        "KAFKA_SECURITY_PROTOCOL": auth.security_protocol,
    })
    register_kafka(auth)


def stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each (they finish the batch in hand), then SIGKILL what is still running after 20 s."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
