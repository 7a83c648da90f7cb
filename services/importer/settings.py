"""Settings of the importer service (environment prefix ``IMPORTER_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


class ImporterSettings(ServiceSettings):
    """Importer service configuration; every field can be set as ``IMPORTER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="IMPORTER_", extra="ignore")

    service_name: str = "importer"
    database: str = "crm_importer"
    group_id: str = "crm-importer"
    http_port: int = 8003
    uploads_dir: str = Field(
        ".run/imports",
        description="Directory where uploaded files are kept under server-chosen names (shared by instances); "
        "never readable through crm.import.start",
    )
    file_roots: list[str] = Field(
        default_factory=lambda: [".run/import-inbox"],
        description="Folders whose regular files crm.import.start may name (JSON list); symlinks and '..' are "
        "resolved before the check, a relative file_uri is looked up in the first; anything else fails its import",
    )
    max_concurrent_jobs: int = Field(
        4, description="Imports one instance runs at the same time; a slow or retrying one never holds up the others", ge=1
    )
    retry_alert_s: float = Field(
        60.0, description="An import retrying an outage for longer than this is reported (status, metrics, /health/ready)"
    )
    max_field_kb: int = Field(64, description="Largest form field of an upload other than the file, in kilobytes", ge=1)
    chunk_rows: int = Field(1000, description="Rows sent per chunk; the checkpoint advances after each chunk's acks", ge=1)
    chunks_in_flight: int = Field(
        4, description="Chunks a job sends ahead of the leads service's answers; a cancel stops within them", ge=1
    )
    job_lease_s: float = Field(30.0, description="How long a job stays with the instance running it without a heartbeat")
    poll_interval_s: float = Field(1.0, description="How often the worker looks for jobs when nothing woke it")
    outcome_timeout_s: float = Field(
        600.0, description="A job waiting this long without a new row outcome completes with what it has"
    )
    max_file_mb: int = Field(200, description="Largest file accepted, in megabytes")
    max_rows: int = Field(1_000_000, description="Most data rows accepted in one file")
    public_url: str = Field("", description="Base URL put before report links in events, e.g. http://importer:8003")
