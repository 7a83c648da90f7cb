"""Settings of the importer service (environment prefix ``IMPORTER_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


class ImporterSettings(ServiceSettings):
    """Importer service configuration; every field can be set as ``IMPORTER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="IMPORTER_", extra="ignore")

    service_name: str = "importer"
    database: str = "crm_importer"
    group_id: str = "crm-importer"
    http_port: int = 8003
