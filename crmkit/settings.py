"""Base settings every service extends: Kafka, MongoDB, HTTP and batching knobs."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Shared endpoints may be given once for all services, without the service prefix.
_SHARED_ENV = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "mongodb_url": "MONGODB_URL",
    "topic_prefix": "CRM_TOPIC_PREFIX",
}


class ServiceSettings(BaseSettings):
    """Settings common to all services; subclasses set an env prefix such as ``LEADS_``."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = Field("service", description="Name used in logs, metrics and the CloudEvents source")
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated")
    mongodb_url: str = Field("mongodb://127.0.0.1:27017/", description="MongoDB (or FerretDB) connection URL")
    database: str = Field("crm", description="Name of the service's own MongoDB database")
    topic_prefix: str = Field("", description="Prefix put before every topic name (isolates tests and tenants)")
    group_id: str = Field("crm-service", description="Kafka consumer group of the service's consumers")
    http_host: str = Field("127.0.0.1", description="HTTP bind address")
    http_port: int = Field(8000, description="HTTP port")
    batch_max_records: int = Field(1000, description="Most records handed to a handler at once")
    batch_timeout_ms: int = Field(50, description="Longest wait to fill a batch")
    topic_partitions: int = Field(6, description="Partitions for topics the service creates")
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

    @model_validator(mode="before")
    @classmethod
    def _shared_endpoints(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for field, env in _SHARED_ENV.items():
                if field not in values and env in os.environ:
                    prefixed = (cls.model_config.get("env_prefix") or "") + field.upper()
                    if prefixed not in os.environ:
                        values[field] = os.environ[env]
        return values

    def topic(self, name: str) -> str:
        """The physical topic name for a contract topic."""
        return f"{self.topic_prefix}{name}"

    def contract_topic(self, physical: str) -> str:
        """The contract topic name for a physical topic name."""
        if self.topic_prefix and physical.startswith(self.topic_prefix):
            return physical[len(self.topic_prefix):]
        return physical
