"""Examples of crm.qualification.commands.v1 and crm.qualification.events.v1."""

from typing import Any

from contracts.examples.base import ADMIN_ID, COMPANY_ID, CONTACT, DEAL_ID, LEAD_ID, MANAGER_ID, PIPELINE_ID, PRODUCTS, REASON_ID, command, event, message_id

EXAMPLES: list[dict[str, Any]] = [
    # crm.qualification.commands.v1
    command(
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
    command("crm.lead.disqualify", {"lead_id": LEAD_ID, "reason_id": REASON_ID, "comment": "Budget frozen until Q3."}),
    command(
        "crm.disqualification-reason.add",
        {"pipeline_id": PIPELINE_ID, "reason_id": REASON_ID, "text": "No budget", "text_ru": "Нет бюджета"},
        actorid=ADMIN_ID,
    ),
    command("crm.disqualification-reason.remove", {"pipeline_id": PIPELINE_ID, "reason_id": REASON_ID}, actorid=ADMIN_ID),
    # crm.qualification.events.v1
    event(
        "crm.company.created",
        "crm/qualification",
        {"company_id": COMPANY_ID, "lead_id": LEAD_ID, "name": "Romashka LLC", "inn": "7701234567", "industry": "retail", "segment": "smb"},
        cause="crm.lead.qualify",
    ),
    event(
        "crm.deal.created",
        "crm/qualification",
        {
            "deal_id": DEAL_ID,
            "lead_id": LEAD_ID,
            "company_id": COMPANY_ID,
            "contact": CONTACT,
            "products": PRODUCTS,
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
    event(
        "crm.lead.qualified",
        "crm/qualification",
        {"lead_id": LEAD_ID, "qualification_type": "deal_and_company", "company_id": COMPANY_ID, "deal_id": DEAL_ID},
        cause="crm.lead.qualify",
    ),
    event(
        "crm.lead.disqualified",
        "crm/qualification",
        {"lead_id": LEAD_ID, "reason_id": REASON_ID, "reason": "No budget", "comment": "Budget frozen until Q3."},
        cause="crm.lead.disqualify",
    ),
    event(
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
]
