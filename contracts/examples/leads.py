"""Examples of crm.leads.commands.v1 and crm.leads.events.v1."""

from typing import Any

from contracts.examples.base import (
    ADMIN_ID, COMPANY, CONTACT, IMPORT_ID, LEAD_ID, MANAGER_ID, OTHER_LEAD_ID, PIPELINE_ID, PRODUCTS, PRODUCT_ID,
    TASK_ID, TIME, command, event, message_id,
)

STAGES = [
    {"stage_id": "new", "name": "New", "status": "new", "position": 0},
    {"stage_id": "processing", "name": "Processing", "status": "in_progress", "position": 1},
    {"stage_id": "qualified", "name": "Qualified", "status": "qualified", "position": 2},
    {"stage_id": "unqualified", "name": "Unqualified", "status": "unqualified", "position": 3},
]
PIPELINE_CARD = {
    "pipeline_id": PIPELINE_ID,
    "name": "Default",
    "stages": STAGES,
    "transition_mode": "manual",
    "is_default": True,
    "version": 1,
    "created_at": TIME,
    "updated_at": TIME,
}
# Where the lead came from and what it wants: as the create command gives it and the card shows it.
ORIGIN = {
    "source": "website",
    "marketing_event": "spring-expo-2025",
    "utm_source": "yandex",
    "utm_medium": "cpc",
    "utm_campaign": "routers-spring",
    "need_maturity": "interested",
    "description": "Wants a quote by Friday.",
}
LEAD_CARD = {
    "lead_id": LEAD_ID,
    "pipeline_id": PIPELINE_ID,
    "stage_id": "processing",
    "status": "in_progress",
    "version": 3,
    "title": "Routers for the Tver office",
    "responsible_id": MANAGER_ID,
    "created_by": MANAGER_ID,
    "contact": CONTACT,
    "company": COMPANY,
    "products": PRODUCTS,
    **ORIGIN,
    "external_id": "web-10045",
    "external_ids": {"website": "web-10045"},
    "created_at": "2025-03-12T10:00:00+03:00",
    "updated_at": TIME,
    "data_changed_at": "2025-03-13T15:20:00+03:00",
    "status_since": TIME,
    "status_history": [
        {
            "pipeline_id": PIPELINE_ID,
            "stage_id": "new",
            "status": "new",
            "entered_at": "2025-03-12T10:00:00+03:00",
            "left_at": TIME,
            "actor_id": MANAGER_ID,
        },
        {"pipeline_id": PIPELINE_ID, "stage_id": "processing", "status": "in_progress", "entered_at": TIME},
    ],
    "deleted": False,
    "activity": {
        "next_due_at": "2025-03-15T12:00:00+03:00",
        "next_task_id": TASK_ID,
        "open_count": 1,
        "overdue_count": 0,
        "state": "on_time",
    },
    "duplicates": [{"lead_id": OTHER_LEAD_ID, "score": 0.9, "matched_on": ["email", "phone"]}],
    "import_id": IMPORT_ID,
}
REJECTED = {
    "command_id": message_id("crm.lead.move"),
    "command_type": "crm.lead.move",
    "reason_code": "invalid_transition",
    "message": "pipeline 'default' only allows forward moves",
    "errors": [{"field": "stage_id", "message": "stage 'new' is before the lead's stage 'processing'"}],
    "lead_id": LEAD_ID,
}

EXAMPLES: list[dict[str, Any]] = [
    # crm.leads.commands.v1
    command(
        "crm.pipeline.create",
        {
            "pipeline_id": "wholesale",
            "name": "Wholesale",
            "stages": [
                {"name": "New", "status": "new"},
                {"name": "Call back", "status": "in_progress"},
                {"name": "Qualified", "status": "qualified"},
                {"name": "Unqualified", "status": "unqualified"},
            ],
            "transition_mode": "forward_only",
        },
        actorid=ADMIN_ID,
    ),
    command(
        "crm.pipeline.update",
        {
            "pipeline_id": "wholesale",
            "name": "Wholesale B2B",
            "stages": [
                {"stage_id": "new", "name": "New", "status": "new"},
                {"name": "Quote sent", "status": "in_progress"},
                {"stage_id": "qualified", "name": "Qualified", "status": "qualified"},
                {"stage_id": "unqualified", "name": "Unqualified", "status": "unqualified"},
            ],
        },
        actorid=ADMIN_ID,
    ),
    command("crm.pipeline.delete", {"pipeline_id": "wholesale"}, actorid=ADMIN_ID),
    command(
        "crm.lead.create",
        {
            "lead_id": LEAD_ID,
            "pipeline_id": PIPELINE_ID,
            "title": "Routers for the Tver office",
            "responsible_id": MANAGER_ID,
            "external_id": "web-10045",
            "contact": {"name": "Ivan Petrov", "phone": "+7 916 123-45-67", "email": "ivan@example.ru"},
            "company": {"name": "Romashka LLC", "inn": "7701234567"},
            "products": [{"product_id": PRODUCT_ID, "quantity": 2, "options": {"color": "black"}}],
            **ORIGIN,
        },
        source="ext/website-form",
    ),
    command(
        "crm.lead.update",
        {"lead_id": LEAD_ID, "title": "Routers for Tver and Klin", "need_maturity": "urgent", "clear": ["marketing_event"]},
    ),
    command("crm.lead.assign", {"lead_id": LEAD_ID, "responsible_id": MANAGER_ID}),
    command("crm.lead.move", {"lead_id": LEAD_ID, "stage_id": "processing"}),
    command("crm.lead.change-pipeline", {"lead_id": LEAD_ID, "pipeline_id": "wholesale"}),
    command("crm.lead.delete", {"lead_id": LEAD_ID}),
    command("crm.lead.restore", {"lead_id": LEAD_ID}),
    command("crm.lead.reopen", {"lead_id": LEAD_ID, "stage_id": "processing"}, actorid=ADMIN_ID),
    command("crm.lead.mark-duplicate", {"lead_id": OTHER_LEAD_ID, "original_lead_id": LEAD_ID}),
    command(
        "crm.lead.merge",
        {"lead_id": LEAD_ID, "other_lead_id": OTHER_LEAD_ID, "fields": {"contact": "other", "title": "self"}},
    ),
    command("crm.lead.dismiss-duplicate", {"lead_id": LEAD_ID, "duplicate_lead_id": OTHER_LEAD_ID}),
    command(
        "crm.lead.refresh-snapshot",
        {"lead_id": LEAD_ID, "contact": {"contact_id": "c-1", "name": "Анна Петрова", "phone": "+79123456789"}, "record_version": 4},
    ),
    # crm.leads.events.v1
    event("crm.pipeline.created", "crm/leads", PIPELINE_CARD),
    event("crm.pipeline.updated", "crm/leads", {**PIPELINE_CARD, "version": 2}, cause="crm.pipeline.update"),
    event("crm.pipeline.deleted", "crm/leads", {"pipeline_id": "wholesale", "version": 3}, cause="crm.pipeline.delete"),
    event(
        "crm.lead.created",
        "crm/leads",
        {**LEAD_CARD, "version": 1, "stage_id": "new", "status": "new", "changed_fields": []},
        cause="crm.lead.create",
    ),
    event("crm.lead.updated", "crm/leads", {**LEAD_CARD, "changed_fields": ["title", "need_maturity"]}, cause="crm.lead.update"),
    event(
        "crm.lead.assigned",
        "crm/leads",
        {"lead_id": LEAD_ID, "responsible_id": MANAGER_ID, "previous_responsible_id": ADMIN_ID, "version": 2},
        cause="crm.lead.assign",
    ),
    event(
        "crm.lead.stage-changed",
        "crm/leads",
        {
            "lead_id": LEAD_ID,
            "pipeline_id": PIPELINE_ID,
            "from_stage_id": "new",
            "to_stage_id": "processing",
            "from_status": "new",
            "to_status": "in_progress",
            "version": 3,
        },
        cause="crm.lead.move",
    ),
    event("crm.lead.deleted", "crm/leads", {"lead_id": LEAD_ID, "version": 4}, cause="crm.lead.delete"),
    event("crm.lead.restored", "crm/leads", {"lead_id": LEAD_ID, "version": 5}, cause="crm.lead.restore"),
    event(
        "crm.lead.duplicates-found",
        "crm/leads",
        {"lead_id": LEAD_ID, "matches": [{"lead_id": OTHER_LEAD_ID, "score": 0.9, "matched_on": ["email"]}], "version": 2},
        cause="crm.lead.create",
    ),
    event(
        "crm.lead.merged",
        "crm/leads",
        {"lead_id": LEAD_ID, "merged_lead_id": OTHER_LEAD_ID, "version": 6},
        cause="crm.lead.merge",
    ),
    event("crm.command.rejected", "crm/leads", REJECTED, cause="crm.lead.move"),
]

# --- issue 20: web-to-lead capture forms and mass actions (crm.leads.commands.v1 / crm.leads.events.v1) ---

FORM_ID = "website-contact"
BULK_ID = "b5c6d7e8-f9a0-4b1c-8d2e-3f4a5b6c7d8e"
FORM_SETTINGS = {
    "name": "Contact us",
    "pipeline_id": PIPELINE_ID,
    "stage_id": "new",
    "presets": {"source": "website", "need_maturity": "interested", "utm_source": "site", "utm_campaign": "spring"},
    "allowed_fields": ["title", "contact.name", "contact.email", "contact.phone", "description"],
    "allowed_origins": ["https://shop.example"],
    "rate_limit_per_minute": 10,
}
FORM_CARD = {
    "form_id": FORM_ID, **FORM_SETTINGS, "has_secret_key": True, "honeypot_field": "_hp", "redirect_url": None,
    "created_by": ADMIN_ID, "version": 1, "deleted": False, "updated_at": TIME,
}
EXAMPLES += [
    command("crm.capture-form.create", {"form_id": FORM_ID, **FORM_SETTINGS, "secret_key": "s3cret-key-of-the-shop-server"},
             actorid=ADMIN_ID),
    command("crm.capture-form.update", {"form_id": FORM_ID, "presets": {"source": "landing"}, "clear": ["redirect_url"]},
             actorid=ADMIN_ID),
    command("crm.capture-form.delete", {"form_id": FORM_ID}, actorid=ADMIN_ID),
    event("crm.capture-form.created", "crm/leads", FORM_CARD, cause="crm.capture-form.create"),
    event("crm.capture-form.updated", "crm/leads", {**FORM_CARD, "presets": {"source": "landing"}, "version": 2},
           cause="crm.capture-form.update"),
    event("crm.capture-form.deleted", "crm/leads", {"form_id": FORM_ID, "version": 3}, cause="crm.capture-form.delete"),
    command("crm.leads.bulk-update", {
        "bulk_id": BULK_ID, "action": "move", "filter": {"pipeline_id": PIPELINE_ID, "stage_id": "new", "source": "expo"},
        "stage_id": "processing",
    }),
    command("crm.leads.bulk-cancel", {"bulk_id": BULK_ID}),
    event("crm.leads.bulk-started", "crm/leads", {"bulk_id": BULK_ID, "action": "move", "total": 1000, "requested_by": MANAGER_ID},
           cause="crm.leads.bulk-update"),
    event("crm.leads.bulk-completed", "crm/leads", {
        "bulk_id": BULK_ID, "action": "move", "state": "completed",
        "counts": {"total": 1000, "applied": 996, "unchanged": 1, "refused": 3, "cancelled": 0},
        "refusals": [{"lead_id": LEAD_ID, "reason_code": "invalid_state", "message": "lead is qualified and locked; reopen it first"}],
        "requested_by": MANAGER_ID,
    }, cause="crm.leads.bulk-update"),
]
# Stage-entry actions and pipeline visibility (issue 20).
EXAMPLES += [
    command(
        "crm.lead.run-stage-action",
        {"lead_id": LEAD_ID, "pipeline_id": "wholesale", "stage_id": "quote_sent", "action_id": "tag-wholesale", "entered_version": 4},
        source="crm/leads", actorid="svc-leads",
    ),
    event(
        "crm.stage-action.failed",
        "crm/leads",
        {
            "lead_id": LEAD_ID, "pipeline_id": "wholesale", "stage_id": "quote_sent", "action_id": "notify-erp",
            "kind": "webhook", "attempt": 2, "will_retry": True, "next_attempt_at": "2025-03-14T09:30:04+03:00",
            "reason": "the endpoint answered 503", "status_code": 503, "delivery_id": "8c4b1f0e-2d3a-5b6c-9d7e-0f1a2b3c4d5e",
        },
    ),
]
for _example in EXAMPLES:
    if _example["type"] == "crm.pipeline.update":  # a stage with entry actions, and a pipeline shown to one team
        _example["data"]["stages"][1]["on_enter"] = [
            {"action_id": "tag-wholesale", "kind": "set_fields", "set_fields": {"source": "wholesale", "need_maturity": "interested"}},
            {"action_id": "notify-erp", "kind": "webhook", "url": "https://erp.example.ru/hooks/crm", "secret": "change-me"},
        ]
        _example["data"]["visible_to"] = {"groups": ["wholesale-team"], "roles": ["sales-director"]}
