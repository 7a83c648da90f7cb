"""Fixtures of the reliability suite: one private Kafka + FerretDB for the whole suite, one Scenario per test."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import PrivateStack, Scenario


def pytest_configure(config: pytest.Config) -> None:
    # The suite stops the broker on purpose: the test clients' reconnect chatter says nothing new.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    config.addinivalue_line("markers", "reliability: kills and restarts services, Kafka and FerretDB of a private stack")


@pytest.fixture(scope="session")
def private_stack() -> Iterator[PrivateStack]:
    """Kafka and FerretDB on free ports of this machine, for this suite only (it restarts them)."""
    run_dir = Path(tempfile.mkdtemp(prefix="crm-reliability-"))
    stack = PrivateStack(run_dir)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        if os.environ.get("CRM_RELIABILITY_KEEP") != "1":  # keep logs and data to look at after a run
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
async def scenario(request: pytest.FixtureRequest, private_stack: PrivateStack) -> AsyncIterator[Scenario]:
    """A scenario's private names and processes; its processes, topics and databases go afterwards."""
    await private_stack.ensure_healthy()
    found = Scenario(private_stack, request.node.name.removeprefix("test_"))
    try:
        yield found
    finally:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            for instance in found.instances:
                print(f"\n--- log of {instance.label} ({instance.process.log_file}) ---\n{instance.log_tail()}")
        await private_stack.ensure_healthy()
        await found.close()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
