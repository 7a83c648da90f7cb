"""The local cluster's layout: ports per node, the size a run folder keeps, each node's security settings."""

from __future__ import annotations

import json

import pytest

from crmctl.kafka import KafkaCluster
from crmctl.stack import StackConfig, StackError


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("CRM_KAFKA_PORT", "CRM_KAFKA_CONTROLLER_PORT", "CRM_KAFKA_BROKERS", "CRM_MONGO_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRM_RUN_DIR", str(tmp_path))
    return tmp_path


def test_a_newcomer_gets_three_nodes_on_9092_up(clean_env):
    config = StackConfig.from_env()
    assert config.brokers == 3
    assert config.node_ports() == [(9092, 9093), (9094, 9095), (9096, 9097)]
    assert config.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert config.mongo_port == 27017


def test_ports_follow_the_base_ports_and_the_size_the_folder_was_made_with(clean_env, monkeypatch):
    monkeypatch.setenv("CRM_KAFKA_PORT", "19092")
    (clean_env / "kafka").mkdir()
    (clean_env / "kafka" / "cluster.json").write_text(json.dumps({"brokers": 1}))
    config = StackConfig.from_env()
    assert config.brokers == 1 and config.kafka_bootstrap == "127.0.0.1:19092"
    assert config.node_ports() == [(19092, 19093)]


def test_another_size_than_the_folder_was_formatted_with_is_refused(clean_env):
    (clean_env / "kafka").mkdir()
    (clean_env / "kafka" / "cluster.json").write_text(json.dumps({"brokers": 3}))
    cluster = KafkaCluster(StackConfig.from_env(brokers=1))
    with pytest.raises(StackError, match="3-node cluster"):
        cluster._check_layout()


def test_more_than_three_nodes_is_refused(clean_env):
    with pytest.raises(StackError, match="1 to 3"):
        StackConfig.from_env(brokers=5)


@pytest.mark.parametrize(("brokers", "replicas", "min_isr"), [(3, "3", "2"), (1, "1", "1")])
def test_every_node_authenticates_authorizes_and_replicates(clean_env, brokers, replicas, min_isr):
    cluster = KafkaCluster(StackConfig.from_env(brokers=brokers))
    assert len(cluster.nodes) == brokers
    for node in cluster.nodes:
        props = dict(line.split("=", 1) for line in cluster._properties(node, "pw").splitlines() if line)
        assert props["listener.security.protocol.map"] == "BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
        assert props["listener.name.broker.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
        assert props["allow.everyone.if.no.acl.found"] == "false"
        assert props["auto.create.topics.enable"] == "false"
        assert props["super.users"] == "User:admin"
        assert props["default.replication.factor"] == replicas
        assert props["min.insync.replicas"] == min_isr
        assert props["controller.quorum.voters"].count("@") == brokers
        assert props["log.dirs"].startswith(str(clean_env))
        # Fewer no-op records in the metadata log, never none (0 would turn them off); fencing keeps its heartbeats.
        assert props["metadata.max.idle.interval.ms"] == "5000"
        assert props["broker.heartbeat.interval.ms"] == "1000" and props["broker.session.timeout.ms"] == "6000"


def test_ferretdb_synchronous_mode_is_normal_unless_full_is_asked_and_nothing_else_is_taken():
    from crmctl.stack import StackError, ferretdb_synchronous

    assert ferretdb_synchronous({}) == "normal"
    assert ferretdb_synchronous({"CRM_FERRETDB_SYNCHRONOUS": "FULL"}) == "full"
    with pytest.raises(StackError, match="full or normal"):
        ferretdb_synchronous({"CRM_FERRETDB_SYNCHRONOUS": "off"})


def test_kafka_runs_the_serial_collector_and_the_client_compiler_unless_told_otherwise(clean_env, monkeypatch):
    monkeypatch.delenv("CRM_KAFKA_JAVA_OPTS", raising=False)
    assert KafkaCluster(StackConfig.from_env(brokers=1)).jvm_options() == [
        "-Xms1g", "-Xmx1g", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
    assert KafkaCluster(StackConfig.from_env(brokers=3)).jvm_options()[:3] == ["-Xms768m", "-Xmx768m", "-XX:+UseSerialGC"]
    monkeypatch.setenv("CRM_KAFKA_JAVA_OPTS", "-XX:+UseG1GC -XX:TieredStopAtLevel=4")
    options = KafkaCluster(StackConfig.from_env(brokers=1)).jvm_options()
    # A collector named there replaces the serial one (the JVM refuses two); the later compiler level wins.
    assert "-XX:+UseSerialGC" not in options and options[-2:] == ["-XX:+UseG1GC", "-XX:TieredStopAtLevel=4"]


def test_extra_broker_properties_are_written_after_the_stack_s_own(clean_env, monkeypatch):
    monkeypatch.setenv("CRM_KAFKA_EXTRA_PROPERTIES", "num.network.threads=2;num.io.threads=2")
    cluster = KafkaCluster(StackConfig.from_env(brokers=1))
    lines = cluster._properties(cluster.nodes[0], "secret").splitlines()
    assert lines[-2:] == ["num.network.threads=2", "num.io.threads=2"]
