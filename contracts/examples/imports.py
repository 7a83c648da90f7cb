"""Examples of crm.imports.commands.v1 and crm.imports.events.v1."""

from typing import Any

from contracts.examples.base import IMPORT_ID, PIPELINE_ID, command, event

EXAMPLES: list[dict[str, Any]] = [
    # crm.imports.commands.v1
    command(
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
    command("crm.import.revert", {"import_id": IMPORT_ID}, source="crm/importer"),
    command("crm.import.cancel", {"import_id": IMPORT_ID}, source="crm/importer"),
    # crm.imports.events.v1
    event(
        "crm.import.started",
        "crm/importer",
        {"import_id": IMPORT_ID, "file_uri": "file:///var/lib/crm/uploads/leads-march.csv", "format": "csv", "pipeline_id": PIPELINE_ID, "dry_run": False},
        cause="crm.import.start",
    ),
    event(
        "crm.import.progress",
        "crm/importer",
        {"import_id": IMPORT_ID, "rows_read": 500, "created": 480, "updated": 12, "rejected": 8, "duplicates": 15},
        cause="crm.import.start",
    ),
    event(
        "crm.import.row-rejected",
        "crm/importer",
        {"import_id": IMPORT_ID, "row": 17, "column": "Email", "reason": "not an email address", "value": "ivan@"},
        cause="crm.import.start",
    ),
    event(
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
    event(
        "crm.import.failed",
        "crm/importer",
        {"import_id": IMPORT_ID, "reason": "file not found: /var/lib/crm/uploads/leads-march.csv", "code": "file_not_found"},
        cause="crm.import.start",
    ),
    event("crm.import.reverted", "crm/importer", {"import_id": IMPORT_ID, "removed": 960, "restored": 24}, cause="crm.import.revert"),
]
