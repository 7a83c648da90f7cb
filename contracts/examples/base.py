"""The example ids, the envelope builders and the parts several topics' examples share."""

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


def message(
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


def command(type_name: str, data: dict[str, Any], *, source: str = "ext/crm-ui", actorid: str = MANAGER_ID) -> dict[str, Any]:
    return message(type_name, source, data, subject=data.get("lead_id"), actorid=actorid)


def event(type_name: str, source: str, data: dict[str, Any], *, cause: str | None = None) -> dict[str, Any]:
    causationid = message_id(cause) if cause else None
    return message(type_name, source, data, subject=data.get("lead_id"), causationid=causationid)


CONTACT = {"contact_id": CONTACT_ID, "name": "Ivan Petrov", "phone": "+79161234567", "email": "ivan@example.ru"}
COMPANY = {"company_id": COMPANY_ID, "name": "Romashka LLC", "inn": "7701234567"}
PRODUCTS = [
    {"product_id": PRODUCT_ID, "name": "Router X200", "kind": "configurable", "quantity": 2, "options": {"color": "black"}}
]
