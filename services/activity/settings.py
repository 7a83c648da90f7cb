"""Settings of the activity service (environment prefix ``ACTIVITY_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


class ActivitySettings(ServiceSettings):
    """Activity service configuration; every field can be set as ``ACTIVITY_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ACTIVITY_", extra="ignore")

    service_name: str = "activity"
    database: str = "crm_activity"
    group_id: str = "crm-activity"
    http_port: int = 8004
