"""Settings of the qualification service (environment prefix ``QUALIFICATION_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


class QualificationSettings(ServiceSettings):
    """Qualification service configuration; every field can be set as ``QUALIFICATION_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="QUALIFICATION_", extra="ignore")

    service_name: str = "qualification"
    database: str = "crm_qualification"
    group_id: str = "crm-qualification"
    http_port: int = 8002
