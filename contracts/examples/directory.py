"""Examples of crm.directory.events.v1 (published by the directory, outside this system)."""

from typing import Any

from contracts.examples.base import ADMIN_ID, COMPANY_ID, CONTACT_ID, MANAGER_ID, PRODUCT_ID, event

EXAMPLES: list[dict[str, Any]] = [
    event("crm.contact.upserted", "ext/directory", {"contact_id": CONTACT_ID, "name": "Ivan Petrov", "phone": "+79161234567", "email": "ivan@example.ru", "version": 7}),
    event("crm.company.upserted", "ext/directory", {"company_id": COMPANY_ID, "name": "Romashka LLC", "inn": "7701234567", "version": 2}),
    event(
        "crm.product.upserted",
        "ext/directory",
        {"product_id": PRODUCT_ID, "name": "Router X200", "kind": "configurable", "options": {"color": ["black", "white"]}, "version": 4},
    ),
    event("crm.user.licence-granted", "ext/directory", {"user_id": MANAGER_ID, "licence": "crm"}),
    event("crm.user.licence-revoked", "ext/directory", {"user_id": MANAGER_ID, "licence": "crm"}),
    event("crm.user.role-granted", "ext/directory", {"user_id": ADMIN_ID, "role": "admin"}),
    event("crm.user.role-revoked", "ext/directory", {"user_id": ADMIN_ID, "role": "admin"}),
    event("crm.user.group-granted", "ext/directory", {"user_id": MANAGER_ID, "group": "wholesale-team"}),
    event("crm.user.group-revoked", "ext/directory", {"user_id": MANAGER_ID, "group": "wholesale-team"}),
]
