"""The importer's filter of known external ids: never a miss, few wrong yeses, a size fixed up front."""

from __future__ import annotations

from services.importer.idfilter import IdFilter


def test_every_added_id_is_found():
    known = IdFilter(50_000)
    ids = [f"crm-{i}" for i in range(50_000)]
    known.update(ids)
    assert all(external_id in known for external_id in ids)
    assert known.added == 50_000


def test_ids_never_added_are_mostly_told_apart():
    known = IdFilter(50_000, false_positives=0.01)
    known.update(f"crm-{i}" for i in range(50_000))
    wrong = sum(f"other-{i}" in known for i in range(50_000))
    assert wrong < 50_000 * 0.02  # sized for 1%; a little slack for chance
    assert "crm-50000" not in IdFilter(10) and 42 not in known


def test_size_is_set_by_the_capacity_not_by_what_is_added():
    known = IdFilter(1_000_000)
    before = known.size_bytes
    known.update(f"row-{i}" for i in range(200_000))
    assert known.size_bytes == before
    assert 1_000_000 < before < 1_500_000  # about 1.2 bytes per id at 1%


def test_over_capacity_it_still_never_misses():
    known = IdFilter(100)
    ids = [f"x{i}" for i in range(5_000)]
    known.update(ids)
    assert all(external_id in known for external_id in ids)
