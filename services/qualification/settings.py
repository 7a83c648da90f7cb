"""Settings of the qualification service (environment prefix ``QUALIFICATION_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


class QualificationSettings(ServiceSettings):
    """Qualification service configuration; every field can be set as ``QUALIFICATION_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="QUALIFICATION_", extra="ignore")

    service_name: str = "qualification"
    database: str = "crm_qualification"
    group_id: str = "crm-qualification"
    http_port: int = 8002
    deal_pipelines: list[str] = Field(
        default_factory=lambda: ["default"],
        description="Deal pipelines a qualification may name as deal_pipeline_id, as JSON: [\"default\", \"b2b\"]",
    )
    recent_messages_kept: int = Field(
        16, description="Per pipeline, how many reason-list commands are remembered to dedupe redeliveries"
    )
    page_size_max: int = Field(200, description="Largest page GET /deals returns")
    read_time_limit_s: float = Field(
        5.0, gt=0, description="Time limit of each HTTP read (its database queries); a slower one is stopped on the server and answered 503"
    )
