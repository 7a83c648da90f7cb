"""Settings of the analytics service (environment prefix ``ANALYTICS_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


class AnalyticsSettings(ServiceSettings):
    """Analytics service configuration; every field can be set as ``ANALYTICS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ANALYTICS_", extra="ignore")

    service_name: str = "analytics"
    database: str = "crm_analytics"  # MongoDB: only the licences and roles that HTTP access checks read
    group_id: str = "crm-analytics"  # not a consumer group (each replica reads every partition): names the DLQ copies
    http_port: int = 8005
    store_path: str = Field(
        "",
        description="DuckDB file holding this replica's whole read model and the offsets it reached (one file per "
        "replica); empty: `.run/analytics/<database>.duckdb`; `:memory:` rebuilds from the topics at every start.",
    )
    store_memory_limit: str = Field("2GB", description="Most memory DuckDB may use (it would otherwise take 80% of the machine's)")
    store_threads: int = Field(0, description="Threads DuckDB answers a report with; 0: one per core")
    batch_max_records: int = Field(20_000, description="Most records applied in one read-model transaction")
    batch_timeout_ms: int = Field(500, description="Longest wait to fill a transaction once records arrive")
    poll_timeout_ms: int = Field(200, description="Longest wait for new records before the feed looks again")

    def store_file(self) -> str:
        return self.store_path or str(Path(".run") / "analytics" / f"{self.database}.duckdb")
