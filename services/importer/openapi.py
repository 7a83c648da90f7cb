"""What the importer HTTP routes' code cannot say by itself, for the OpenAPI document."""

from crmkit.openapi import LIMIT, Operation, Param

_LANGUAGE = Param("language", "Header language.", enum=("ru", "en"))
_UPLOAD = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "The CSV or XLSX file (at most IMPORTER_MAX_FILE_MB)."},
            "import_id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._\\\\-]{0,99}$", "description": "Your own id for the import."},
            "pipeline_id": {"type": "string", "description": "Pipeline the leads go into (default: `default`)."},
            "stage_id": {"type": "string", "description": "Stage for rows without a stage column."},
            "dry_run": {"type": "boolean", "description": "Check every row and count; write nothing."},
            "mapping": {"type": "string", "description": "Column to field: a JSON object or `Column=field` lines."},
            "format": {"type": "string", "enum": ["csv", "xlsx"], "description": "Detected when absent."},
            "encoding": {"type": "string", "description": "CSV encoding; detected when absent."},
            "delimiter": {"type": "string", "description": "CSV delimiter: `,`, `;` or `tab`."},
            "sheet": {"type": "string", "description": "XLSX sheet; the first when absent."},
            "language": {"type": "string", "enum": ["ru", "en"], "description": "Language of the error report."},
        },
    }}},
}

OPERATIONS = {
    ("POST", "/imports"): Operation(
        request_body=_UPLOAD, ok_status="202", ok="Accepted: `import_id`, `state` and `status_url`.",
        errors=("400", "409", "413")),
    ("GET", "/imports"): Operation(
        query=(
            Param("state", "Only imports in this state.", enum=("waiting", "running", "completed", "failed", "reverting", "reverted")),
            Param("actor_id", "Administrators: only this user's imports."),
            LIMIT,
            Param("offset", "Skip this many (the previous page's `next_offset`).", "integer", minimum=0),
        ),
        ok="The caller's imports newest first (an administrator's: everyone's): `items`, `limit`, `offset`, `next_offset`."),
    ("GET", "/imports/{import_id}"): Operation(
        query=(Param("wait", "A long poll: answer at the import's next change (a chunk read, its end), at once when it "
                             "has ended, else after this many seconds.", "integer", minimum=0, maximum=30),),
        ok="The import's state, counts, rows per second and report links.", errors=("400", "404")),
    ("GET", "/imports/{import_id}/errors.{format}"): Operation(
        query=(_LANGUAGE,), ok="The error report: every rejected row with its cells, column and reason (csv or xlsx).",
        ok_media="application/octet-stream", errors=("404",)),
    ("GET", "/imports/template.{format}"): Operation(
        query=(_LANGUAGE,), ok="An import template (csv or xlsx).", ok_media="application/octet-stream", errors=("400", "404")),
    ("POST", "/imports/{import_id}/cancel"): Operation(
        ok_status="202", ok="Cancel requested; the status turns cancelled.", errors=("404", "409")),
    ("POST", "/imports/{import_id}/revert"): Operation(
        ok_status="202", ok="Revert requested; the status turns reverting, then reverted.", errors=("404", "409")),
}
