"""The harness's results document: the machine and versions, headline figures with their spread, the key set."""

from __future__ import annotations

import os
import platform
import re
import statistics
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The figures issue 21 sets targets on; every results document carries each of them.
REQUIRED_KEYS: tuple[str, ...] = (
    "leads_intake.service_cpu_us_per_lead", "leads_intake.dup_check_us_per_lead", "leads_intake.ratio_to_bare",
    "import_csv_100k.ratio_to_bare", "import_xlsx_100k.ratio_to_parse", "import_csv_1k.seconds", "import_csv_10k.seconds",
    "qualification.per_second", "activity.tasks_per_second", "latency.qualify_p99_ms", "latency.bare_hop_p99_ms",
    "reads.card_p99_ms", "reads.board_p99_ms", "reads.list_p99_ms",
)

# Shown beside them in the tables: the figures the targets are read against, and the scale-out.
SHOWN_KEYS: tuple[str, ...] = REQUIRED_KEYS + (
    "latency.qualify_p99_in_hops", "latency.create_p99_ms", "qualification_10k.per_second",
    "leads_intake.service_kafka_us_per_lead", "scale_out.processes.1.ratio_to_bare", "scale_out.processes.1.kafka_us_per_lead",
    "scale_out.processes.1.per_second", "scale_out.processes.2.per_second", "scale_out.processes.3.per_second",
    "scale_out.bare_per_second",
)

# Each figure's target (issue 21), as (comparison, bound): shown beside the figure in the table.
TARGETS: dict[str, tuple[str, float]] = {
    "leads_intake.service_cpu_us_per_lead": ("<=", 100), "leads_intake.dup_check_us_per_lead": ("<=", 25),
    "leads_intake.ratio_to_bare": (">=", 0.6), "import_csv_100k.ratio_to_bare": (">=", 0.5),
    "import_xlsx_100k.ratio_to_parse": (">=", 0.6), "import_csv_1k.seconds": ("<", 1), "import_csv_10k.seconds": ("<", 3),
    "qualification.per_second": (">=", 1000), "activity.tasks_per_second": (">=", 2000),
    "latency.qualify_p99_in_hops": ("<=", 5), "qualification_10k.per_second": (">=", 1000),
    "reads.card_p99_ms": ("<", 20), "reads.board_p99_ms": ("<", 100), "reads.list_p99_ms": ("<", 100),
}

PACKAGES = ("faststream", "aiokafka", "pymongo", "pydantic", "httpx", "uvicorn", "starlette", "duckdb", "python-calamine",
            "openpyxl", "orjson")


def combine(runs: list[dict]) -> dict:
    """One section from its repetitions: every number is the median of the runs, with its spread beside."""
    if len(runs) == 1:
        return {**runs[0], "repetitions": 1}
    section: dict = {"repetitions": len(runs), "spread": {}, "runs": runs}
    for key, value in runs[0].items():
        values = [run.get(key) for run in runs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(set(values)) == 1:
            section[key] = values[0]  # a size, the same in every run: no spread
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            section[key] = statistics.median(values)
            section["spread"][key] = [min(values), max(values)]
        elif key not in section:
            section[key] = value
    return section


def lookup(document: dict, dotted: str):
    value = document
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def missing_keys(document: dict) -> list[str]:
    """Required figures absent or not a number."""
    return [key for key in REQUIRED_KEYS
            if not isinstance(lookup(document, key), (int, float)) or isinstance(lookup(document, key), bool)]


def verdict(key: str, value: float | None) -> str:
    if key not in TARGETS or value is None:
        return ""
    op, bound = TARGETS[key]
    met = {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[op]
    return f"target {op} {bound:g}: {'met' if met else 'NOT met'}"


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mem = re.search(r"MemTotal:\s+(\d+)", meminfo)
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    return {"nproc": os.cpu_count(), "memory_gb": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
            "cpu_model": model.group(1).strip() if model else platform.processor(), "kernel": platform.release()}


def versions() -> dict:
    pom = (ROOT / "infra/kafka/pom.xml").read_text() if (ROOT / "infra/kafka/pom.xml").exists() else ""
    gomod = (ROOT / "infra/ferretdb/go.mod").read_text() if (ROOT / "infra/ferretdb/go.mod").exists() else ""
    kafka = re.search(r"<kafka.version>([^<]+)<", pom)
    ferretdb = re.search(r"FerretDB/FerretDB (v[\d.]+)", gomod)
    found = {"python": platform.python_version(), "kafka": kafka.group(1) if kafka else None,
             "ferretdb": ferretdb.group(1) if ferretdb else None}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def commit() -> str | None:
    head = ROOT / ".git"
    try:
        import subprocess

        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip() if head.exists() else None
    except (OSError, subprocess.CalledProcessError):
        return None


def document(sections: dict[str, dict], *, quick: bool, started: datetime, load: dict) -> dict:
    """The results document: ``meta`` first, then one section per benchmark."""
    meta = {"date": started.astimezone(UTC).isoformat(timespec="seconds"),
            "seconds": round((datetime.now(UTC) - started).total_seconds(), 1), "quick": quick, "commit": commit(),
            "machine": machine(), "versions": versions(), "load": load}
    return {"meta": meta, **sections}


def merge(earlier: dict, later: dict) -> dict:
    """``later``'s sections over ``earlier``'s; the meta says which sections come from which run."""
    runs = earlier["meta"].get("runs") or [{k: v for k, v in earlier["meta"].items() if k != "runs"}
                                           | {"sections": [k for k in earlier if k != "meta"]}]
    for run in runs:
        run["sections"] = [name for name in run["sections"] if name not in later]
    this_run = {k: v for k, v in later["meta"].items() if k != "runs"} | {"sections": [k for k in later if k != "meta"]}
    merged = {**earlier, **later}
    merged["meta"] = {**earlier["meta"], "runs": [run for run in runs if run["sections"]] + [this_run]}
    return merged


def markdown(document: dict) -> str:
    """The headline figures as a Markdown table (what the README's Benchmarks section carries)."""
    meta = document["meta"]
    m, load = meta["machine"], meta.get("load", {})
    sizes = {"leads intake": lookup(document, "leads_intake.leads"), "import rows": lookup(document, "import_csv_100k.rows"),
             "qualifications": lookup(document, "qualification.leads"), "tasks": lookup(document, "activity.tasks"),
             "leads read": lookup(document, "reads.leads")}
    lines = [
        f"{'Quick' if meta['quick'] else 'Full'} run of {meta['date']} (commit {meta['commit']}, {meta['seconds']:.0f} s): "
        f"{m['nproc']} cores, {m['memory_gb']} GB, {m['cpu_model']}; load average {load.get('loadavg_start', 0):.1f} at the "
        f"start, {load.get('loadavg_end', 0):.1f} at the end, the machine's CPU {load.get('cpu_busy_pct', 0):.0f}% busy. "
        "Sizes: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items() if isinstance(v, int)) + ".",
    ]
    for run in meta.get("runs", [])[1:]:  # sections re-run later with --only
        lines.append(f"Re-run at {run['date']} ({run['seconds']:.0f} s, load average {run['load'].get('loadavg_start', 0):.1f} to "
                     f"{run['load'].get('loadavg_end', 0):.1f}): {', '.join(run['sections'])}.")
    lines += [
        "",
        "| figure | value | spread (min–max) | issue 21 target |",
        "|---|---|---|---|",
    ]
    for key in SHOWN_KEYS:
        value = lookup(document, key)
        if value is None and key not in REQUIRED_KEYS:
            continue
        section, field = key.split(".", 1)
        spread = lookup(document, f"{section}.spread.{field}")
        op, bound = TARGETS.get(key, ("", None))
        shown = f"{value:,.2f}" if isinstance(value, (int, float)) else "missing"
        target = f"{op} {bound:g} ({verdict(key, value).split(': ')[-1]})" if bound is not None and isinstance(value, (int, float)) else ""
        lines.append(f"| `{key}` | {shown} | {f'{spread[0]:,.2f}–{spread[1]:,.2f}' if spread else ''} | {target} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    print(markdown(json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "bench/results/latest.json").read_text())))
