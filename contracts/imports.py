"""Messages of the importer: start, revert and cancel file imports, and their progress."""

from enum import Enum

from pydantic import Field

from contracts.base import Payload
from contracts.rejections import CommandRejected


class ImportFormat(str, Enum):
    """File format of an import."""

    csv = "csv"
    xlsx = "xlsx"


# --- commands (crm.imports.commands.v1) ---


class StartImport(Payload):
    """Import leads from a CSV or XLSX file into a pipeline."""

    TYPE = "crm.import.start"

    import_id: str = Field(description="Id of the import; also the idempotency key of the job.")
    file_uri: str = Field(description="Path or URI of the file, readable by the importer.", min_length=1)
    format: ImportFormat | None = Field(None, description="File format; detected when absent.")
    pipeline_id: str | None = Field(None, description="Pipeline to import into; the default pipeline when absent.")
    mapping: dict[str, str] | None = Field(
        None, description="Column header to lead field; columns not named map by field name or alias."
    )
    dry_run: bool = Field(False, description="Validate every row and report, without writing leads.")
    encoding: str | None = Field(None, description="CSV text encoding, e.g. `utf-8`, `cp1251`; detected when absent.")
    delimiter: str | None = Field(
        None, description="CSV delimiter: `,`, `;` or tab; detected when absent.", min_length=1, max_length=1
    )
    sheet: str | None = Field(None, description="XLSX sheet name; the first sheet when absent.")
    stage_id: str | None = Field(
        None, description="Stage for rows without a stage column; the pipeline's first stage when absent."
    )
    language: str | None = Field(None, description="Language of messages in the error report, e.g. `en`, `ru`.")


class RevertImport(Payload):
    """Undo an import: remove the leads it created and restore those it updated."""

    TYPE = "crm.import.revert"

    import_id: str = Field(description="Import to revert.")


class CancelImport(Payload):
    """Stop a running import; rows already written stay."""

    TYPE = "crm.import.cancel"

    import_id: str = Field(description="Import to cancel.")


# --- events (crm.imports.events.v1) ---


class ImportStarted(Payload):
    """An import began reading its file."""

    TYPE = "crm.import.started"

    import_id: str = Field(description="The import.")
    file_uri: str = Field(description="Path or URI of the file.")
    format: ImportFormat = Field(description="File format, as given or detected.")
    pipeline_id: str = Field(description="Pipeline the leads go into.")
    dry_run: bool = Field(description="Whether leads are only validated, not written.")


class ImportProgress(Payload):
    """Running totals of an import."""

    TYPE = "crm.import.progress"

    import_id: str = Field(description="The import.")
    rows_read: int = Field(description="Data rows read so far.", ge=0)
    created: int = Field(description="Leads created so far.", ge=0)
    updated: int = Field(description="Leads updated so far.", ge=0)
    rejected: int = Field(description="Rows rejected so far.", ge=0)
    duplicates: int = Field(description="Rows that matched existing leads so far.", ge=0)


class ImportRowRejected(Payload):
    """A row of an import file was rejected; the rest of the file goes on."""

    TYPE = "crm.import.row-rejected"

    import_id: str = Field(description="The import.")
    row: int = Field(description="Row number in the file, as a spreadsheet shows it (header is row 1).", ge=1)
    column: str | None = Field(None, description="Column header of the offending cell, if one cell is at fault.")
    reason: str = Field(description="What is wrong with the row, human readable.")
    value: str | None = Field(None, description="The offending cell value, as read.")


class ImportCompleted(Payload):
    """An import finished (or was cancelled) with its totals."""

    TYPE = "crm.import.completed"

    import_id: str = Field(description="The import.")
    rows_total: int = Field(description="Data rows read.", ge=0)
    created: int = Field(description="Leads created.", ge=0)
    updated: int = Field(description="Leads updated.", ge=0)
    rejected: int = Field(description="Rows rejected.", ge=0)
    duplicates: int = Field(description="Rows that matched existing leads.", ge=0)
    dry_run: bool = Field(description="Whether leads were only validated, not written.")
    cancelled: bool = Field(False, description="Whether the import stopped early on a cancel command.")
    error_report_uri: str | None = Field(None, description="Where the report of rejected rows can be fetched.")


class ImportFailed(Payload):
    """An import could not go on, e.g. the file is unreadable."""

    TYPE = "crm.import.failed"

    import_id: str = Field(description="The import.")
    reason: str = Field(description="Why it failed, human readable.")
    code: str | None = Field(None, description="Machine-readable failure code, e.g. `file_not_found`.")


class ImportReverted(Payload):
    """An import was undone."""

    TYPE = "crm.import.reverted"

    import_id: str = Field(description="The import.")
    removed: int = Field(description="Leads it had created that were removed.", ge=0)
    restored: int = Field(description="Leads it had updated that were restored.", ge=0)


IMPORTS_COMMAND_PAYLOADS: tuple[type[Payload], ...] = (StartImport, RevertImport, CancelImport)

IMPORTS_EVENT_PAYLOADS: tuple[type[Payload], ...] = (
    ImportStarted,
    ImportProgress,
    ImportRowRejected,
    ImportCompleted,
    ImportFailed,
    ImportReverted,
    CommandRejected,
)
