"""Base settings every service extends: Kafka (endpoints and credentials), MongoDB, HTTP and batching knobs."""

from __future__ import annotations

import os
import ssl
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Shared endpoints and credentials may be given once for all services, without the service prefix.
_SHARED_ENV = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "kafka_security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "KAFKA_SASL_PASSWORD",
    "kafka_ssl_cafile": "KAFKA_SSL_CAFILE",
    "kafka_ssl_certfile": "KAFKA_SSL_CERTFILE",
    "kafka_ssl_keyfile": "KAFKA_SSL_KEYFILE",
    "mongodb_url": "MONGODB_URL",
    "topic_prefix": "CRM_TOPIC_PREFIX",
    "kafka_compression_type": "KAFKA_COMPRESSION_TYPE",
}

SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
# Off by default: a codec on the producers asks every reader of the topics for it (an integrator's client too).
CompressionType = Literal["none", "gzip", "snappy", "lz4", "zstd"]


class _SharedFallback(BaseSettings):
    """Fills a field from its unprefixed shared variable when the prefixed one is not set."""

    model_config = SettingsConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _shared_endpoints(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for name, env in _SHARED_ENV.items():
                if name in cls.model_fields and name not in values and env in os.environ:
                    prefixed = (cls.model_config.get("env_prefix") or "") + name.upper()
                    if prefixed not in os.environ:
                        values[name] = os.environ[env]
        return values


class KafkaSettings(_SharedFallback):
    """How to reach Kafka and who to be there; without a prefix it reads ``KAFKA_*`` (the CLI, tests, benchmarks)."""

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated")
    kafka_security_protocol: str = Field(
        "", description="PLAINTEXT, SASL_PLAINTEXT, SASL_SSL or SSL; empty: SASL_PLAINTEXT when a user name is set, else PLAINTEXT"
    )
    kafka_sasl_mechanism: str = Field("SCRAM-SHA-512", description="SASL mechanism: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN")
    kafka_sasl_username: str = Field("", description="The Kafka principal this process connects as")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="That principal's password")
    kafka_ssl_cafile: str = Field("", description="CA bundle that signs the brokers' certificates (SSL, SASL_SSL)")
    kafka_ssl_certfile: str = Field("", description="Client certificate, for brokers that ask for one (mutual TLS)")
    kafka_ssl_keyfile: str = Field("", description="Key of that client certificate")

    @model_validator(mode="after")
    def _known_security(self) -> KafkaSettings:
        if self.kafka_security_protocol and self.kafka_security_protocol.upper() not in SECURITY_PROTOCOLS:
            raise ValueError(f"kafka_security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.kafka_sasl_mechanism.upper() not in SASL_MECHANISMS:
            raise ValueError(f"kafka_sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}")
        if self.security_protocol.startswith("SASL") and not self.kafka_sasl_username:
            raise ValueError("kafka_sasl_username is required with a SASL security protocol")
        return self

    @property
    def security_protocol(self) -> str:
        if self.kafka_security_protocol:
            return self.kafka_security_protocol.upper()
        return "SASL_PLAINTEXT" if self.kafka_sasl_username else "PLAINTEXT"

    def bootstrap_list(self) -> list[str]:
        """The bootstrap servers as a list (aiokafka does not split a comma-separated string)."""
        return [server.strip() for server in self.kafka_bootstrap_servers.split(",") if server.strip()]

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.security_protocol.endswith("SSL"):
            return None
        context = ssl.create_default_context(cafile=self.kafka_ssl_cafile or None)
        if self.kafka_ssl_certfile:
            context.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile or None)
        return context

    def kafka_client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin): protocol and credentials."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_list(), "security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            options.update(
                sasl_mechanism=self.kafka_sasl_mechanism.upper(),
                sasl_plain_username=self.kafka_sasl_username,
                sasl_plain_password=self.kafka_sasl_password.get_secret_value(),
            )
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        return options


class ServiceSettings(KafkaSettings):
    """Settings common to all services; subclasses set an env prefix such as ``LEADS_``."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = Field("service", description="Name used in logs, metrics and the CloudEvents source")
    mongodb_url: str = Field("mongodb://127.0.0.1:27017/", description="MongoDB (or FerretDB) connection URL")
    database: str = Field("crm", description="Name of the service's own MongoDB database")
    topic_prefix: str = Field("", description="Prefix put before every topic name (isolates tests and tenants)")
    group_id: str = Field("crm-service", description="Kafka consumer group of the service's consumers")
    kafka_compression_type: CompressionType = Field(
        "none",
        description="How the service's producer compresses its record batches: none, gzip, snappy, lz4 or zstd "
        "(every consumer of the topics then needs that codec)",
    )

    @field_validator("kafka_compression_type", mode="before")
    @classmethod
    def _codec_name(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    http_host: str = Field("127.0.0.1", description="HTTP bind address")
    http_port: int = Field(8000, description="HTTP port")
    batch_max_records: int = Field(1000, description="Most records handed to a handler at once")
    batch_timeout_ms: int = Field(50, description="Longest wait to fill a batch")
    topic_partitions: int = Field(6, description="Partitions for topics the service creates")
    topic_replication: int = Field(
        -1, description="Replicas of the topics the service creates; -1: the cluster's default.replication.factor"
    )
    auto_offset_reset: str = Field("earliest", description="Where a new consumer group starts")
    retry_backoff_max_s: float = Field(5.0, description="Longest pause between retries of a batch after an outage")
    tokens: dict[str, str] = Field(
        default_factory=dict,
        description="HTTP bearer tokens mapped to user ids, as JSON: {\"token\": \"user-id\"}",
    )
    service_principals: list[str] = Field(
        default_factory=list,
        description="User ids trusted as licensed administrators without any grant (load generators in tests "
        "and benchmarks). Empty by default and in production: anyone who may write a commands topic can name "
        "one as `actorid`; the platform's own services need none",
    )
    phone_region: str = Field(
        "RU", description="Region (ISO 3166 code) of phone numbers written without a country code", min_length=2, max_length=2
    )
    log_level: str = Field("WARNING", description="Python log level")
    log_format: str = Field(
        "auto", description="Log line format: `json` (one JSON object a line), `text`, or `auto` (text on a terminal, else JSON)"
    )
    lag_interval_s: float = Field(5.0, description="Seconds between two reads of the consumer groups' lag (crm_consumer_lag)")
    otlp_endpoint: str = Field(
        "", description="OpenTelemetry OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:4318/v1/traces); empty: spans are not exported"
    )
    gc_freeze: bool = Field(
        True, description="After start-up, exempt the objects then alive from Python's cycle collector (gc.freeze)"
    )

    def topic(self, name: str) -> str:
        """The physical topic name for a contract topic."""
        return f"{self.topic_prefix}{name}"

    def contract_topic(self, physical: str) -> str:
        """The contract topic name for a physical topic name."""
        if self.topic_prefix and physical.startswith(self.topic_prefix):
            return physical[len(self.topic_prefix):]
        return physical
