"""Pure planning rules of the importer: create, update, unchanged, resend, revert, refusals, counts."""

from __future__ import annotations

from services.importer import domain as d
from services.importer.rows import RowResult

SOURCE = "crm/importer"


def result(row: int, **lead) -> RowResult:
    return RowResult(row_number=row, lead={"title": "T", **lead})


def test_unknown_external_id_creates_with_a_stable_id():
    plan = d.plan_row(result(2, external_id="x1"), import_id="i1", source=SOURCE, known=None)
    assert plan.action == "create"
    assert plan.lead_id == d.derive_lead_id("i2", 9, "x1", SOURCE)  # independent of import and row


def test_row_without_external_id_creates_per_import_and_row():
    a = d.plan_row(result(2), import_id="i1", source=SOURCE, known=None)
    b = d.plan_row(result(2), import_id="i2", source=SOURCE, known=None)
    assert a.action == b.action == "create" and a.lead_id != b.lead_id


def test_known_external_id_updates_and_keeps_previous_values():
    known = d.KnownLead("L1", {"title": "Old", "contact": {"name": "A", "email": "a@x.ru", "phone": None}, "source": None})
    plan = d.plan_row(result(3, title="New", external_id="x1", contact={"phone": "+79120000000"}, source="web"),
                      import_id="i1", source=SOURCE, known=known)
    assert plan.action == "update" and plan.lead_id == "L1"
    assert plan.payload["contact"] == {"name": "A", "email": "a@x.ru", "phone": "+79120000000"}
    assert plan.previous == {"title": "Old", "contact": {"name": "A", "email": "a@x.ru", "phone": None}, "source": None}
    values, clear = d.revert_of(plan.previous)
    assert values["title"] == "Old" and clear == ["source"]


def test_same_values_are_unchanged_and_send_nothing():
    known = d.KnownLead("L1", {"title": "T", "products": [{"product_id": "P", "quantity": 1.0, "name": "snap"}]})
    plan = d.plan_row(result(3, external_id="x1", products=[{"product_id": "P"}]), import_id="i1", source=SOURCE, known=known)
    assert plan.action == "unchanged"


def test_resent_rows_repeat_their_first_command():
    own = d.KnownLead(d.derive_lead_id("i1", 2, "x1", SOURCE), {"title": "T"}, created_by_import="i1")
    assert d.plan_row(result(2, external_id="x1"), import_id="i1", source=SOURCE, known=own).action == "create"
    other = d.KnownLead("L1", {"title": "New"})
    saved = {"title": "Old"}
    plan = d.plan_row(result(2, title="New", external_id="x1"), import_id="i1", source=SOURCE, known=other, saved_previous=saved)
    assert plan.action == "update" and plan.previous == saved


def test_invalid_row_is_rejected_with_its_errors():
    plan = d.plan_row(RowResult(4, None, [("Телефон", "bad")]), import_id="i1", source=SOURCE, known=None)
    assert plan.action == "rejected" and plan.errors == [("Телефон", "bad")]


def test_correlation_round_trip():
    assert d.row_of_correlation(d.correlation_id("imp:with:colons", 17)) == ("imp:with:colons", 17)
    assert d.row_of_correlation("something-else") is None and d.row_of_correlation(None) is None


def test_command_refusals():
    done = d.ImportJob("i1", "f.csv", "u", state="completed")
    refusal = d.command_refusal
    assert refusal("crm.import.start", "u", False, False, None)[0] == "not_licensed"
    assert refusal("crm.import.start", None, True, False, None)[0] == "not_licensed"  # no actorid at all
    assert refusal("crm.import.cancel", "u", True, False, None)[0] == "not_found"
    assert refusal("crm.import.cancel", "u", True, False, done)[0] == "invalid_state"
    assert refusal("crm.import.cancel", "u", True, False, d.ImportJob("i1", "f", "u", state="running")) is None
    assert refusal("crm.import.revert", "u", True, False, done) is None
    assert refusal("crm.import.revert", "u", True, False, d.ImportJob("i1", "f", "u", state="completed", dry_run=True))[0] == "invalid_state"


def test_an_import_belongs_to_its_owner_and_administrators():
    done = d.ImportJob("i1", "f.csv", "owner", state="completed")
    assert d.command_refusal("crm.import.revert", "other", True, False, done)[0] == "forbidden"
    assert d.command_refusal("crm.import.cancel", "other", True, False, d.ImportJob("i1", "f", "owner"))[0] == "forbidden"
    assert d.command_refusal("crm.import.start", "other", True, False, done)[0] == "forbidden"
    assert d.command_refusal("crm.import.revert", "admin", True, True, done) is None
    # The licence comes first: an unlicensed sender is refused the same for a job that exists and one that does not.
    assert d.command_refusal("crm.import.revert", "other", False, False, done) == d.command_refusal("crm.import.revert", "other", False, False, None)
    assert d.may_see(done, "owner", False) and d.may_see(done, "admin", True) and not d.may_see(done, "other", False)


def test_finished_when_every_row_read_has_an_outcome():
    job = d.ImportJob("i1", "f.csv", "u", state="waiting", rows_read=5, rejected_local=1, unchanged=1)
    counts = d.job_counts(job, {"created": 2, "updated": 1, "duplicates": 1})
    assert (counts.created, counts.updated, counts.rejected, counts.duplicates, counts.settled) == (2, 1, 1, 1, 5)
    assert d.is_finished(job, counts)
    assert not d.is_finished(job, d.job_counts(job, {"created": 1}))


def test_projection_fields_are_read_in_both_stored_forms():
    from services.importer.external_ids import _fields_of

    assert _fields_of({"fields": '{"title":"Заявка","phone":null}'}) == {"title": "Заявка", "phone": None}
    assert _fields_of({"fields": {"title": "Заявка"}}) == {"title": "Заявка"}  # written before it was a string
    assert _fields_of({}) == {}
