"""One valid example envelope per message type, as it travels on Kafka (JSON-ready dicts)."""

import uuid
from typing import Any

_NAMESPACE = uuid.UUID("6f1c2a9e-8d4b-4c3e-9a7f-1b2c3d4e5f60")

LEAD_ID = "0b8f6a4e-5c1d-4f7a-9e2b-3d4c5a6b7c8d"
OTHER_LEAD_ID = "5e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b"
MANAGER_ID = "user-manager-1"
ADMIN_ID = "user-admin-1"
PIPELINE_ID = "default"
CONTACT_ID = "c1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8"
COMPANY_ID = "a9b8c7d6-e5f4-4a3b-8c2d-1e0f9a8b7c6d"
PRODUCT_ID = "p-router-x200"
DEAL_ID = "d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70"
TASK_ID = "t7a8b9c0-d1e2-4f3a-8b4c-5d6e7f8a9b0c"
IMPORT_ID = "i1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
REASON_ID = "no-budget"
TIME = "2025-03-14T09:30:00+03:00"


def message_id(type_name: str) -> str:
    """The deterministic example message id of a type (so examples can refer to each other)."""
    return str(uuid.uuid5(_NAMESPACE, type_name))


def _message(
    type_name: str,
    source: str,
    data: dict[str, Any],
    *,
    subject: str | None = None,
    actorid: str | None = None,
    causationid: str | None = None,
) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": message_id(type_name),
        "type": type_name,
        "source": source,
        "time": TIME,
        "datacontenttype": "application/json",
        "correlationid": message_id("correlation"),
    }
    if subject is not None:
        envelope["subject"] = subject
    if actorid is not None:
        envelope["actorid"] = actorid
    if causationid is not None:
        envelope["causationid"] = causationid
    envelope["data"] = data
    return envelope


def _command(type_name: str, data: dict[str, Any], *, source: str = "ext/crm-ui", actorid: str = MANAGER_ID) -> dict[str, Any]:
    return _message(type_name, source, data, subject=data.get("lead_id"), actorid=actorid)


def _event(type_name: str, source: str, data: dict[str, Any], *, cause: str | None = None) -> dict[str, Any]:
    causationid = message_id(cause) if cause else None
    return _message(type_name, source, data, subject=data.get("lead_id"), causationid=causationid)


_CONTACT = {"contact_id": CONTACT_ID, "name": "Ivan Petrov", "phone": "+79161234567", "email": "ivan@example.ru"}
_COMPANY = {"company_id": COMPANY_ID, "name": "Romashka LLC", "inn": "7701234567"}
_PRODUCTS = [
    {"product_id": PRODUCT_ID, "name": "Router X200", "kind": "configurable", "quantity": 2, "options": {"color": "black"}}
]
_STAGES = [
    {"stage_id": "new", "name": "New", "status": "new", "position": 0},
    {"stage_id": "processing", "name": "Processing", "status": "in_progress", "position": 1},
    {"stage_id": "qualified", "name": "Qualified", "status": "qualified", "position": 2},
    {"stage_id": "unqualified", "name": "Unqualified", "status": "unqualified", "position": 3},
]
_PIPELINE_CARD = {
    "pipeline_id": PIPELINE_ID,
    "name": "Default",
    "stages": _STAGES,
    "transition_mode": "manual",
    "is_default": True,
    "version": 1,
    "created_at": TIME,
    "updated_at": TIME,
}
_LEAD_CARD = {
    "lead_id": LEAD_ID,
    "pipeline_id": PIPELINE_ID,
    "stage_id": "processing",
    "status": "in_progress",
    "version": 3,
    "title": "Routers for the Tver office",
    "responsible_id": MANAGER_ID,
    "created_by": MANAGER_ID,
    "contact": _CONTACT,
    "company": _COMPANY,
    "products": _PRODUCTS,
    "source": "website",
    "marketing_event": "spring-expo-2025",
    "utm_source": "yandex",
    "utm_medium": "cpc",
    "utm_campaign": "routers-spring",
    "need_maturity": "interested",
    "description": "Wants a quote by Friday.",
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
_TASK = {
    "task_id": TASK_ID,
    "lead_id": LEAD_ID,
    "type": "call",
    "title": "Call about the quote",
    "start_at": "2025-03-15T11:30:00+03:00",
    "due_at": "2025-03-15T12:00:00+03:00",
    "assignee_id": MANAGER_ID,
    "priority": "high",
    "contact_id": CONTACT_ID,
    "status": "open",
    "version": 1,
}
_REJECTED = {
    "command_id": message_id("crm.lead.move"),
    "command_type": "crm.lead.move",
    "reason_code": "invalid_transition",
    "message": "pipeline 'default' only allows forward moves",
    "errors": [{"field": "stage_id", "message": "stage 'new' is before the lead's stage 'processing'"}],
    "lead_id": LEAD_ID,
}

_ALL: list[dict[str, Any]] = [
    # crm.leads.commands.v1
    _command(
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
    _command(
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
    _command("crm.pipeline.delete", {"pipeline_id": "wholesale"}, actorid=ADMIN_ID),
    _command(
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
            "source": "website",
            "marketing_event": "spring-expo-2025",
            "utm_source": "yandex",
            "utm_medium": "cpc",
            "utm_campaign": "routers-spring",
            "need_maturity": "interested",
            "description": "Wants a quote by Friday.",
        },
        source="ext/website-form",
    ),
    _command(
        "crm.lead.update",
        {"lead_id": LEAD_ID, "title": "Routers for Tver and Klin", "need_maturity": "urgent", "clear": ["marketing_event"]},
    ),
    _command("crm.lead.assign", {"lead_id": LEAD_ID, "responsible_id": MANAGER_ID}),
    _command("crm.lead.move", {"lead_id": LEAD_ID, "stage_id": "processing"}),
    _command("crm.lead.change-pipeline", {"lead_id": LEAD_ID, "pipeline_id": "wholesale"}),
    _command("crm.lead.delete", {"lead_id": LEAD_ID}),
    _command("crm.lead.restore", {"lead_id": LEAD_ID}),
    _command("crm.lead.reopen", {"lead_id": LEAD_ID, "stage_id": "processing"}, actorid=ADMIN_ID),
    _command("crm.lead.mark-duplicate", {"lead_id": OTHER_LEAD_ID, "original_lead_id": LEAD_ID}),
    _command(
        "crm.lead.merge",
        {"lead_id": LEAD_ID, "other_lead_id": OTHER_LEAD_ID, "fields": {"contact": "other", "title": "self"}},
    ),
    _command("crm.lead.dismiss-duplicate", {"lead_id": LEAD_ID, "duplicate_lead_id": OTHER_LEAD_ID}),
    _command(
        "crm.lead.refresh-snapshot",
        {"lead_id": LEAD_ID, "contact": {"contact_id": "c-1", "name": "Анна Петрова", "phone": "+79123456789"}, "record_version": 4},
    ),
    # crm.leads.events.v1
    _event("crm.pipeline.created", "crm/leads", _PIPELINE_CARD),
    _event("crm.pipeline.updated", "crm/leads", {**_PIPELINE_CARD, "version": 2}, cause="crm.pipeline.update"),
    _event("crm.pipeline.deleted", "crm/leads", {"pipeline_id": "wholesale", "version": 3}, cause="crm.pipeline.delete"),
    _event(
        "crm.lead.created",
        "crm/leads",
        {**_LEAD_CARD, "version": 1, "stage_id": "new", "status": "new", "changed_fields": []},
        cause="crm.lead.create",
    ),
    _event("crm.lead.updated", "crm/leads", {**_LEAD_CARD, "changed_fields": ["title", "need_maturity"]}, cause="crm.lead.update"),
    _event(
        "crm.lead.assigned",
        "crm/leads",
        {"lead_id": LEAD_ID, "responsible_id": MANAGER_ID, "previous_responsible_id": ADMIN_ID, "version": 2},
        cause="crm.lead.assign",
    ),
    _event(
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
    _event("crm.lead.deleted", "crm/leads", {"lead_id": LEAD_ID, "version": 4}, cause="crm.lead.delete"),
    _event("crm.lead.restored", "crm/leads", {"lead_id": LEAD_ID, "version": 5}, cause="crm.lead.restore"),
    _event(
        "crm.lead.duplicates-found",
        "crm/leads",
        {"lead_id": LEAD_ID, "matches": [{"lead_id": OTHER_LEAD_ID, "score": 0.9, "matched_on": ["email"]}], "version": 2},
        cause="crm.lead.create",
    ),
    _event(
        "crm.lead.merged",
        "crm/leads",
        {"lead_id": LEAD_ID, "merged_lead_id": OTHER_LEAD_ID, "version": 6},
        cause="crm.lead.merge",
    ),
    _event("crm.command.rejected", "crm/leads", _REJECTED, cause="crm.lead.move"),
    # crm.qualification.commands.v1
    _command(
        "crm.lead.qualify",
        {
            "lead_id": LEAD_ID,
            "qualification_type": "deal_and_company",
            "new_company": {"name": "Romashka LLC", "inn": "7701234567"},
            "industry": "retail",
            "segment": "smb",
            "deal_pipeline_id": "default",
        },
    ),
    _command("crm.lead.disqualify", {"lead_id": LEAD_ID, "reason_id": REASON_ID, "comment": "Budget frozen until Q3."}),
    _command(
        "crm.disqualification-reason.add",
        {"pipeline_id": PIPELINE_ID, "reason_id": REASON_ID, "text": "No budget", "text_ru": "Нет бюджета"},
        actorid=ADMIN_ID,
    ),
    _command("crm.disqualification-reason.remove", {"pipeline_id": PIPELINE_ID, "reason_id": REASON_ID}, actorid=ADMIN_ID),
    # crm.qualification.events.v1
    _event(
        "crm.company.created",
        "crm/qualification",
        {"company_id": COMPANY_ID, "lead_id": LEAD_ID, "name": "Romashka LLC", "inn": "7701234567", "industry": "retail", "segment": "smb"},
        cause="crm.lead.qualify",
    ),
    _event(
        "crm.deal.created",
        "crm/qualification",
        {
            "deal_id": DEAL_ID,
            "lead_id": LEAD_ID,
            "company_id": COMPANY_ID,
            "contact": _CONTACT,
            "products": _PRODUCTS,
            "title": "Routers for the Tver office",
            "responsible_id": MANAGER_ID,
            "source": "website",
            "utm_source": "yandex",
            "utm_medium": "cpc",
            "utm_campaign": None,
            "deal_pipeline_id": "default",
        },
        cause="crm.lead.qualify",
    ),
    _event(
        "crm.lead.qualified",
        "crm/qualification",
        {"lead_id": LEAD_ID, "qualification_type": "deal_and_company", "company_id": COMPANY_ID, "deal_id": DEAL_ID},
        cause="crm.lead.qualify",
    ),
    _event(
        "crm.lead.disqualified",
        "crm/qualification",
        {"lead_id": LEAD_ID, "reason_id": REASON_ID, "reason": "No budget", "comment": "Budget frozen until Q3."},
        cause="crm.lead.disqualify",
    ),
    _event(
        "crm.qualification.rejected",
        "crm/qualification",
        {
            "lead_id": LEAD_ID,
            "command_id": message_id("crm.lead.qualify"),
            "reasons": [
                {"code": "validation", "field": "deal_pipeline_id", "message": "unknown deal pipeline 'retail'"}
            ],
        },
        cause="crm.lead.qualify",
    ),
    # crm.imports.commands.v1
    _command(
        "crm.import.start",
        {
            "import_id": IMPORT_ID,
            "file_uri": "file:///var/lib/crm/uploads/leads-march.csv",
            "format": "csv",
            "pipeline_id": PIPELINE_ID,
            "mapping": {"Наименование": "title", "Телефон": "contact.phone"},
            "dry_run": False,
            "encoding": "cp1251",
            "delimiter": ";",
            "language": "ru",
        },
        source="crm/importer",
    ),
    _command("crm.import.revert", {"import_id": IMPORT_ID}, source="crm/importer"),
    _command("crm.import.cancel", {"import_id": IMPORT_ID}, source="crm/importer"),
    # crm.imports.events.v1
    _event(
        "crm.import.started",
        "crm/importer",
        {"import_id": IMPORT_ID, "file_uri": "file:///var/lib/crm/uploads/leads-march.csv", "format": "csv", "pipeline_id": PIPELINE_ID, "dry_run": False},
        cause="crm.import.start",
    ),
    _event(
        "crm.import.progress",
        "crm/importer",
        {"import_id": IMPORT_ID, "rows_read": 500, "created": 480, "updated": 12, "rejected": 8, "duplicates": 15},
        cause="crm.import.start",
    ),
    _event(
        "crm.import.row-rejected",
        "crm/importer",
        {"import_id": IMPORT_ID, "row": 17, "column": "Email", "reason": "not an email address", "value": "ivan@"},
        cause="crm.import.start",
    ),
    _event(
        "crm.import.completed",
        "crm/importer",
        {
            "import_id": IMPORT_ID,
            "rows_total": 1000,
            "created": 960,
            "updated": 24,
            "rejected": 16,
            "duplicates": 31,
            "dry_run": False,
            "cancelled": False,
            "error_report_uri": f"/imports/{IMPORT_ID}/errors.csv",
        },
        cause="crm.import.start",
    ),
    _event(
        "crm.import.failed",
        "crm/importer",
        {"import_id": IMPORT_ID, "reason": "file not found: /var/lib/crm/uploads/leads-march.csv", "code": "file_not_found"},
        cause="crm.import.start",
    ),
    _event("crm.import.reverted", "crm/importer", {"import_id": IMPORT_ID, "removed": 960, "restored": 24}, cause="crm.import.revert"),
    # crm.activity.commands.v1
    _command(
        "crm.task.create",
        {
            "task_id": TASK_ID,
            "lead_id": LEAD_ID,
            "type": "call",
            "title": "Call about the quote",
            "start_at": "2025-03-15T11:30:00+03:00",
            "due_at": "2025-03-15T12:00:00+03:00",
            "assignee_id": MANAGER_ID,
            "priority": "high",
            "contact_id": CONTACT_ID,
        },
    ),
    _command("crm.task.update", {"task_id": TASK_ID, "due_at": "2025-03-15T13:00:00+03:00", "priority": "normal"}),
    _command(
        "crm.task.complete",
        {"task_id": TASK_ID, "outcome": "no_answer", "next_call_at": "2025-03-16T11:00:00+03:00", "comment": "Voicemail."},
    ),
    _command("crm.task.cancel", {"task_id": TASK_ID, "comment": "Client asked to email instead."}),
    _command("crm.task.type.add", {"type_id": "site-visit", "name": "Site visit"}, actorid=ADMIN_ID),
    # crm.activity.events.v1
    _event("crm.task.created", "crm/activity", _TASK, cause="crm.task.create"),
    _event("crm.task.updated", "crm/activity", {**_TASK, "priority": "normal", "version": 2}, cause="crm.task.update"),
    _event(
        "crm.task.completed",
        "crm/activity",
        {**_TASK, "status": "done", "outcome": "no_answer", "comment": "Voicemail.", "completed_at": TIME, "version": 3},
        cause="crm.task.complete",
    ),
    _event(
        "crm.task.cancelled",
        "crm/activity",
        {**_TASK, "status": "cancelled", "comment": "Client asked to email instead.", "completed_at": TIME, "version": 3},
        cause="crm.task.cancel",
    ),
    _event(
        "crm.task.due-soon",
        "crm/activity",
        {"task_id": TASK_ID, "lead_id": LEAD_ID, "due_at": "2025-03-15T12:00:00+03:00", "assignee_id": MANAGER_ID},
    ),
    _event(
        "crm.task.overdue",
        "crm/activity",
        {"task_id": TASK_ID, "lead_id": LEAD_ID, "due_at": "2025-03-15T12:00:00+03:00", "assignee_id": MANAGER_ID},
    ),
    _event(
        "crm.lead.activity-summary",
        "crm/activity",
        {
            "lead_id": LEAD_ID,
            "next_due_at": "2025-03-15T12:00:00+03:00",
            "next_task_id": TASK_ID,
            "open_count": 1,
            "overdue_count": 0,
            "state": "due_soon",
        },
        cause="crm.task.create",
    ),
    # crm.directory.events.v1
    _event("crm.contact.upserted", "ext/directory", {"contact_id": CONTACT_ID, "name": "Ivan Petrov", "phone": "+79161234567", "email": "ivan@example.ru", "version": 7}),
    _event("crm.company.upserted", "ext/directory", {"company_id": COMPANY_ID, "name": "Romashka LLC", "inn": "7701234567", "version": 2}),
    _event(
        "crm.product.upserted",
        "ext/directory",
        {"product_id": PRODUCT_ID, "name": "Router X200", "kind": "configurable", "options": {"color": ["black", "white"]}, "version": 4},
    ),
    _event("crm.user.licence-granted", "ext/directory", {"user_id": MANAGER_ID, "licence": "crm"}),
    _event("crm.user.licence-revoked", "ext/directory", {"user_id": MANAGER_ID, "licence": "crm"}),
    _event("crm.user.role-granted", "ext/directory", {"user_id": ADMIN_ID, "role": "admin"}),
    _event("crm.user.role-revoked", "ext/directory", {"user_id": ADMIN_ID, "role": "admin"}),
]

# --- issue 20: web-to-lead capture forms and mass actions (crm.leads.commands.v1 / crm.leads.events.v1) ---

FORM_ID = "website-contact"
BULK_ID = "b5c6d7e8-f9a0-4b1c-8d2e-3f4a5b6c7d8e"
_FORM_SETTINGS = {
    "name": "Contact us",
    "pipeline_id": PIPELINE_ID,
    "stage_id": "new",
    "presets": {"source": "website", "need_maturity": "interested", "utm_source": "site", "utm_campaign": "spring"},
    "allowed_fields": ["title", "contact.name", "contact.email", "contact.phone", "description"],
    "allowed_origins": ["https://shop.example"],
    "rate_limit_per_minute": 10,
}
_FORM_CARD = {
    "form_id": FORM_ID, **_FORM_SETTINGS, "has_secret_key": True, "honeypot_field": "_hp", "redirect_url": None,
    "created_by": ADMIN_ID, "version": 1, "deleted": False, "updated_at": TIME,
}
_ALL += [
    _command("crm.capture-form.create", {"form_id": FORM_ID, **_FORM_SETTINGS, "secret_key": "s3cret-key-of-the-shop-server"},
             actorid=ADMIN_ID),
    _command("crm.capture-form.update", {"form_id": FORM_ID, "presets": {"source": "landing"}, "clear": ["redirect_url"]},
             actorid=ADMIN_ID),
    _command("crm.capture-form.delete", {"form_id": FORM_ID}, actorid=ADMIN_ID),
    _event("crm.capture-form.created", "crm/leads", _FORM_CARD, cause="crm.capture-form.create"),
    _event("crm.capture-form.updated", "crm/leads", {**_FORM_CARD, "presets": {"source": "landing"}, "version": 2},
           cause="crm.capture-form.update"),
    _event("crm.capture-form.deleted", "crm/leads", {"form_id": FORM_ID, "version": 3}, cause="crm.capture-form.delete"),
    _command("crm.leads.bulk-update", {
        "bulk_id": BULK_ID, "action": "move", "filter": {"pipeline_id": PIPELINE_ID, "stage_id": "new", "source": "expo"},
        "stage_id": "processing",
    }),
    _command("crm.leads.bulk-cancel", {"bulk_id": BULK_ID}),
    _event("crm.leads.bulk-started", "crm/leads", {"bulk_id": BULK_ID, "action": "move", "total": 1000, "requested_by": MANAGER_ID},
           cause="crm.leads.bulk-update"),
    _event("crm.leads.bulk-completed", "crm/leads", {
        "bulk_id": BULK_ID, "action": "move", "state": "completed",
        "counts": {"total": 1000, "applied": 996, "unchanged": 1, "refused": 3, "cancelled": 0},
        "refusals": [{"lead_id": LEAD_ID, "reason_code": "invalid_state", "message": "lead is qualified and locked; reopen it first"}],
        "requested_by": MANAGER_ID,
    }, cause="crm.leads.bulk-update"),
]
# Stage-entry actions and pipeline visibility (issue 20).
_ALL += [
    _command(
        "crm.lead.run-stage-action",
        {"lead_id": LEAD_ID, "pipeline_id": "wholesale", "stage_id": "quote_sent", "action_id": "tag-wholesale", "entered_version": 4},
        source="crm/leads", actorid="svc-leads",
    ),
    _event(
        "crm.stage-action.failed",
        "crm/leads",
        {
            "lead_id": LEAD_ID, "pipeline_id": "wholesale", "stage_id": "quote_sent", "action_id": "notify-erp",
            "kind": "webhook", "attempt": 2, "will_retry": True, "next_attempt_at": "2025-03-14T09:30:04+03:00",
            "reason": "the endpoint answered 503", "status_code": 503, "delivery_id": "8c4b1f0e-2d3a-5b6c-9d7e-0f1a2b3c4d5e",
        },
    ),
    _event("crm.user.group-granted", "ext/directory", {"user_id": MANAGER_ID, "group": "wholesale-team"}),
    _event("crm.user.group-revoked", "ext/directory", {"user_id": MANAGER_ID, "group": "wholesale-team"}),
]
for _example in _ALL:
    if _example["type"] == "crm.pipeline.update":  # a stage with entry actions, and a pipeline shown to one team
        _example["data"]["stages"][1]["on_enter"] = [
            {"action_id": "tag-wholesale", "kind": "set_fields", "set_fields": {"source": "wholesale", "need_maturity": "interested"}},
            {"action_id": "notify-erp", "kind": "webhook", "url": "https://erp.example.ru/hooks/crm", "secret": "change-me"},
        ]
        _example["data"]["visible_to"] = {"groups": ["wholesale-team"], "roles": ["sales-director"]}

EXAMPLES: dict[str, dict[str, Any]] = {example["type"]: example for example in _ALL}
assert len(EXAMPLES) == len(_ALL), "one example per type"
