"""Settings of the leads service (environment prefix ``LEADS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crmkit.settings import ServiceSettings


class LeadsSettings(ServiceSettings):
    """Leads service configuration; every field can be set as ``LEADS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="LEADS_", extra="ignore")

    service_name: str = "leads"
    database: str = "crm_leads"
    group_id: str = "crm-leads"
    http_port: int = 8001
    duplicate_check: bool = Field(True, description="Match new leads against existing ones by email, phone and name")
    recent_messages_kept: int = Field(
        8, description="Per lead, how many recent message ids (with their events) are kept to dedupe redeliveries"
    )
    write_chunk: int = Field(
        250, description="Leads per concurrent unit of work inside a batch (computing overlaps storing)"
    )
    card_max_bytes: int = Field(
        1_000_000,
        description="Largest lead card (as JSON) a change may produce; a bigger one is refused, since each "
        "card event carries the whole card and a Kafka record has a size limit",
    )
    page_size_max: int = Field(200, description="Largest page the HTTP list endpoints return")
    board_counters: bool = Field(
        True, description="Keep the board's stage counts by the write path (a few counter documents a batch); off, an instance "
        "marks them stale and boards count index ranges. Every instance writing leads must keep them for them to be used"
    )
    board_counters_grace_s: float = Field(
        10.0, gt=0, description="How long a recount of the board's counts waits for batches already storing leads; a batch "
        "that takes longer across a recount marks the counts stale"
    )
    board_counters_lease_s: float = Field(
        120.0, gt=0, description="How long a recount may hold the counts (batches wait meanwhile); after it, batches go on and the counts are stale"
    )
    read_time_limit_s: float = Field(
        5.0, gt=0, description="Time limit of each HTTP read (its database queries); a slower one is stopped on the server and answered 503"
    )
    read_access_cache_s: float = Field(
        1.0, ge=0, le=60, description="How long the HTTP reads keep a caller's licence, roles and groups and the pipelines' visibility "
        "(0: read on every request); a change this instance applies counts at once, one applied by another instance within this time"
    )
    # Web-to-lead capture (services/leads/capture/)
    capture_max_body_bytes: int = Field(16_384, ge=256, description="Largest form submission `POST /capture/{form_id}` takes; a bigger one is answered 413")
    capture_dedup_window_s: int = Field(
        3_600, ge=60, description="A submission without a `submission_id` sent again with the same fields within this many seconds makes no second lead"
    )
    capture_trust_forwarded: bool = Field(
        False, description="Take the client address for the rate limit from `X-Forwarded-For`, its last entry (only behind a proxy that appends to it)"
    )
    # Mass actions (services/leads/bulk/)
    bulk_max_leads: int = Field(10_000, ge=1, description="Most leads one `crm.leads.bulk-update` by filter may take; a larger match is refused")
    bulk_chunk: int = Field(200, ge=1, description="Per-lead commands of a mass action in flight at once (a cancel stops the rest)")
    bulk_poll_s: float = Field(0.25, gt=0, description="Seconds between two passes of the mass-action runner over running jobs")
    stage_actions: bool = Field(
        True, description="Run the stage-entry actions (field updates, webhooks) in this instance: its own consumer group on the events topic and the webhook delivery loop"
    )
    stage_actions_idle_check_s: float = Field(
        2.0, ge=0,
        description="While no stage has an action (and no field action awaits its answer), the actions consumer group fetches "
                    "nothing and keeps its offsets at the log end; how often, in seconds, it looks again (an action added on "
                    "another instance starts within this; on this one at once). 0: it reads every event, as before",
    )
    webhook_allowed_private_hosts: list[str] = Field(
        default_factory=list,
        description="Private or loopback hosts (`host` or `host:port`) webhooks may call; every other private address is refused",
    )
    secrets_keys: list[str] = Field(
        default_factory=list,
        description="Fernet keys (32 bytes, url-safe base64) sealing webhook signing secrets at rest: the first seals, each opens "
                    "(rotate by putting a new key first); empty: secrets are stored as given, with a warning at start",
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="Time limit of one webhook request")
    webhook_max_attempts: int = Field(8, ge=1, description="Attempts of one webhook delivery before it is given up")
    webhook_backoff_s: float = Field(1.0, gt=0, description="Pause before a webhook's first retry; doubled on each further one")
    webhook_backoff_max_s: float = Field(300.0, gt=0, description="Longest pause between retries of a webhook")
    webhook_concurrency: int = Field(16, ge=1, description="Webhook requests in flight per instance")
    webhook_endpoint_concurrency: int = Field(
        2, ge=1, description="Webhook requests in flight per endpoint (scheme, host and port) per instance, so one slow endpoint holds only its own"
    )
    webhook_poll_s: float = Field(0.5, gt=0, description="How often the delivery loop looks for due webhook deliveries when idle")
    webhook_lease_s: float = Field(
        60.0, gt=0, description="How long an instance holds a delivery it is sending; after a crash another instance takes it up after this"
    )
    webhook_delivered_kept_s: float = Field(
        86_400.0, gt=0, description="How long a delivered webhook's record is kept in the outbox (failed ones are kept)"
    )

    def private_webhook_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.webhook_allowed_private_hosts if h.strip())
