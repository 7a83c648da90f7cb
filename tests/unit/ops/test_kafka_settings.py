"""Kafka connection settings: prefixed over shared variables, SASL and TLS options for every client."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from crmkit.subscriptions import faststream_security
from crmkit.settings import KafkaSettings
from services.leads.settings import LeadsSettings


def test_a_service_takes_its_own_principal_before_the_shared_one(monkeypatch):
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "shared")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "shared-pw")
    monkeypatch.setenv("LEADS_KAFKA_SASL_USERNAME", "leads")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "a:1, b:2")
    settings = LeadsSettings()
    options = settings.kafka_client_options()
    assert options["sasl_plain_username"] == "leads"
    assert options["sasl_plain_password"] == "shared-pw"
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["bootstrap_servers"] == ["a:1", "b:2"]
    security = faststream_security(settings)
    assert type(security).__name__ == "SASLScram512" and security.username == "leads"


def test_without_a_user_the_connection_is_plaintext(monkeypatch):
    for name in ("KAFKA_SASL_USERNAME", "KAFKA_SECURITY_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    settings = KafkaSettings()
    assert settings.kafka_client_options() == {"bootstrap_servers": ["127.0.0.1:9092"], "security_protocol": "PLAINTEXT"}
    assert faststream_security(settings) is None


def test_sasl_ssl_passes_a_tls_context(monkeypatch):
    settings = KafkaSettings(kafka_security_protocol="sasl_ssl", kafka_sasl_username="u", kafka_sasl_password="p")
    options = settings.kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["ssl_context"] is not None
    assert faststream_security(settings).use_ssl


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"kafka_security_protocol": "SASL"}, "kafka_security_protocol"),
        ({"kafka_sasl_mechanism": "MD5"}, "kafka_sasl_mechanism"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "kafka_sasl_username"),
    ],
)
def test_a_wrong_setting_is_named(fields, named, monkeypatch):
    monkeypatch.delenv("KAFKA_SASL_USERNAME", raising=False)
    with pytest.raises(ValidationError, match=named):
        KafkaSettings(**fields)


def test_the_producers_compression_is_off_unless_set_once_for_all_or_per_service(monkeypatch):
    monkeypatch.delenv("KAFKA_COMPRESSION_TYPE", raising=False)
    monkeypatch.delenv("LEADS_KAFKA_COMPRESSION_TYPE", raising=False)
    assert LeadsSettings().kafka_compression_type == "none"
    monkeypatch.setenv("KAFKA_COMPRESSION_TYPE", "ZSTD")
    assert LeadsSettings().kafka_compression_type == "zstd"
    monkeypatch.setenv("LEADS_KAFKA_COMPRESSION_TYPE", "lz4")
    assert LeadsSettings().kafka_compression_type == "lz4"


def test_an_unknown_compression_is_named(monkeypatch):
    monkeypatch.setenv("LEADS_KAFKA_COMPRESSION_TYPE", "brotli")
    with pytest.raises(ValidationError, match="kafka_compression_type"):
        LeadsSettings()
