"""The importer's job metrics: jobs by state and each running job's rows per second, from what the store says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from services.importer.domain import ImportJob
from services.importer.ops import ImportMetrics

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeImports:
    def __init__(self, counts: dict[str, int], running: list[ImportJob]) -> None:
        self.counts, self.jobs = counts, running

    async def count_by_state(self) -> dict[str, int]:
        return self.counts

    async def running(self) -> list[ImportJob]:
        return self.jobs


def _job(import_id: str, rows: int, seconds: float) -> ImportJob:
    return ImportJob(import_id=import_id, file_uri="x.csv", actor_id="alice", rows_read=rows, started_at=NOW - timedelta(seconds=seconds))


async def test_jobs_by_state_and_rows_per_second_of_the_running_ones():
    registry = CollectorRegistry()
    imports = FakeImports({"running": 2, "completed": 5, "reverted": 1}, [_job("a", 5000, 10), _job("b", 300, 60)])
    metrics = ImportMetrics(imports, registry, clock=lambda: NOW)
    await metrics.refresh()
    assert registry.get_sample_value("crm_import_jobs", {"state": "completed"}) == 5
    assert registry.get_sample_value("crm_import_jobs", {"state": "reverted"}) == 1
    assert registry.get_sample_value("crm_import_jobs", {"state": "failed"}) == 0  # known states always shown
    assert registry.get_sample_value("crm_import_rows_per_second", {"import_id": "a"}) == 500
    assert registry.get_sample_value("crm_import_rows_per_second", {"import_id": "b"}) == 5

    imports.jobs = [_job("b", 600, 60)]  # a finished: its speed is no longer reported
    await metrics.refresh()
    assert registry.get_sample_value("crm_import_rows_per_second", {"import_id": "a"}) is None
    assert registry.get_sample_value("crm_import_rows_per_second", {"import_id": "b"}) == 10
