"""The whole pipeline keeps memory flat and resumes without doubling rows."""

from __future__ import annotations

import tracemalloc

from services.importer.domain import command_id, derive_lead_id
from services.importer.rows import row_to_lead
from services.importer.mapping import build_mapping
from services.importer.readers import open_rows

ROWS = 200_000


def write_big_csv(path, rows: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as file:
        file.write("Название;Телефон;Эл. почта;Компания;ИНН;Описание\n")
        for i in range(rows):
            email = f"lead{i}@example.ru" if i % 1000 else "broken-email"
            file.write(f"Лид {i};8912{i:07d};{email};ООО Компания {i};7701234567;Описание лида номер {i}\n")


def test_200k_row_csv_streams_in_flat_memory(tmp_path):
    path = tmp_path / "big.csv"
    write_big_csv(path, ROWS)
    assert path.stat().st_size > 15 * 1024 * 1024

    tracemalloc.start()
    try:
        valid = rejected = last = 0
        with open_rows(path) as source:
            mapping = build_mapping(source.header)
            for number, cells in source:
                result = row_to_lead(number, cells, mapping, pipeline_id="default")
                if result.ok:
                    valid += 1
                else:
                    rejected += 1
                last = number
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (valid, rejected, last) == (ROWS - ROWS // 1000, ROWS // 1000, ROWS + 1)
    # The file is ~20 MB; holding it, or even its rows, would show far above this.
    assert peak < 3 * 1024 * 1024, f"peak traced memory {peak / 1048576:.1f} MB"


def test_resumed_import_gives_the_same_ids_and_no_row_twice(tmp_path):
    path = tmp_path / "leads.csv"
    write_big_csv(path, 50)

    def commands(start_after_row: int = 0, stop_at: int | None = None) -> list[tuple[str, str]]:
        out = []
        with open_rows(path, start_after_row=start_after_row) as source:
            mapping = build_mapping(source.header)
            for number, cells in source:
                if stop_at is not None and number > stop_at:
                    break  # the import died here
                row_to_lead(number, cells, mapping, pipeline_id="default")
                out.append((command_id("imp-1", number), derive_lead_id("imp-1", number, None, None)))
        return out

    first_run = commands(stop_at=20)
    resumed = commands(start_after_row=20)

    assert first_run + resumed == commands()
    assert len(set(first_run + resumed)) == 50
