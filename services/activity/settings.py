"""Settings of the activity service (environment prefix ``ACTIVITY_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


class ActivitySettings(ServiceSettings):
    """Activity service configuration; every field can be set as ``ACTIVITY_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ACTIVITY_", extra="ignore")

    service_name: str = "activity"
    database: str = "crm_activity"
    group_id: str = "crm-activity"
    http_port: int = 8004
    # Each batch publishes one summary per lead it touched, and each summary costs a card update in the
    # leads service and its projection here and in qualification: fewer, larger batches under a burst.
    # 10,000 crm.task.create on 1,000 leads (bench/bench_flow.py, same run): 1,000 -> 5,000 records took
    # FerretDB's CPU per task from 2,054 to 1,420 µs. A batch only waits for what has arrived.
    batch_max_records: int = Field(5000, description="Most records handed to a handler at once (larger than the shared default: see the README)")
    due_pass_interval_s: float = Field(
        30.0, description="Seconds between passes that announce tasks becoming due soon or overdue; 0 disables them"
    )
    due_pass_batch: int = Field(1000, description="Most tasks one due pass looks at; the next pass takes the rest")
    owed_notice_grace_s: float = Field(
        120.0, description="A due notice claimed but not confirmed published for this long is published again"
    )
    recent_messages_kept: int = Field(
        8, description="Per task, how many recent message ids (with their events) are kept to dedupe redeliveries"
    )
    page_size_max: int = Field(500, description="Largest page GET /tasks returns")
    read_time_limit_s: float = Field(
        5.0, gt=0, description="Time limit of each HTTP read (its database queries); a slower one is stopped on the server and answered 503"
    )
    day_timezone: str = Field("UTC", description="Time zone whose calendar day GET /my-day shows, unless ?tz= is given")
