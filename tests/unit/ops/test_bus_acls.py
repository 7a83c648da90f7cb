"""The ACL table matches what each service consumes and publishes, and grants nobody else the protected topics."""

from __future__ import annotations

import importlib

import pytest

from contracts.topics import ALL_TOPICS, DIRECTORY_EVENTS, LEADS_COMMANDS, dlq_topic
from crmctl import bus
from crmctl.services import SERVICES


# Commands a service sends to itself, beyond what it declares it publishes.
INTERNAL_COMMANDS = {"leads": {LEADS_COMMANDS}}


@pytest.mark.parametrize("name", [spec.name for spec in SERVICES])
def test_each_service_may_read_its_inputs_and_write_its_outputs(name):
    app = importlib.import_module(f"services.{name}.app")
    access = bus.PRINCIPALS[name]
    assert set(app.CONSUMES) <= set(access.reads)
    assert set(access.writes) == set(app.PUBLISHES) | INTERNAL_COMMANDS.get(name, set())
    assert set(access.dlqs) == set(app.CONSUMES)
    writes = {g.name for g in bus.grants(principals=[name]) if g.operation == "WRITE"}
    assert writes == set(access.writes) | {dlq_topic(t) for t in app.CONSUMES}


def test_only_the_directory_writes_the_directory_topic():
    writers = {g.principal for g in bus.grants() if g.operation == "WRITE" and g.name == DIRECTORY_EVENTS}
    assert writers == {"User:directory"}


def test_only_the_owning_service_writes_an_events_topic_and_the_integrator_none():
    for topic in bus.EVENTS_TOPICS:
        writers = {g.principal for g in bus.grants() if g.operation == "WRITE" and g.name == topic} - {"User:operator"}
        assert len(writers) == 1, (topic, writers)
    integrator = {g.name for g in bus.grants(principals=["integrator"]) if g.operation == "WRITE"}
    assert integrator == set(bus.COMMANDS_TOPICS)


def test_a_prefix_puts_every_topic_and_group_under_it():
    prefixed = bus.grants("t1.")
    assert prefixed and all(g.name.startswith("t1.") for g in prefixed)
    assert len(prefixed) == len(bus.grants())


def test_every_contract_topic_is_created_and_events_keep_their_records():
    from crmkit.topics import topic_config

    assert set(bus.EVENTS_TOPICS) | set(bus.COMMANDS_TOPICS) == set(ALL_TOPICS)
    assert all(topic_config(t)["retention.ms"] == "-1" for t in bus.EVENTS_TOPICS)
    assert all(topic_config(t) == {} for t in bus.COMMANDS_TOPICS)


def test_credentials_are_made_once_and_readable_only_by_their_owner(tmp_path):
    path = tmp_path / "kafka" / "credentials.json"
    first = bus.load_or_create_credentials(path)
    assert set(first) == {bus.ADMIN, *bus.PRINCIPALS}
    assert bus.load_or_create_credentials(path) == first
    assert path.stat().st_mode & 0o077 == 0
