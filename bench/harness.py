"""``./dev bench``: every benchmark in one run, repeated where cheap, tables printed and bench/results/latest.json written.

Starts the local stack when it is not running and stops it at the end (it leaves a stack it found running).
``--quick`` runs every benchmark at a tenth of the size (minutes); the full run uses the sizes of issue 21.

Run: ./dev bench [--quick] [--only leads_intake,reads] [--out bench/results/latest.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_analytics  # noqa: E402
import bench_flow  # noqa: E402
import bench_import  # noqa: E402
import bench_import_cli  # noqa: E402
import bench_latency  # noqa: E402
import bench_leads  # noqa: E402
import bench_read  # noqa: E402
import common  # noqa: E402
import results  # noqa: E402

from crmctl.stack import Stack  # noqa: E402

# Sizes and repetitions: (full, quick).
SIZES = {
    "leads": (100_000, 10_000), "leads_reps": (1, 2), "import_rows": (100_000, 10_000),
    "cli_1k_reps": (3, 3), "cli_10k_reps": (2, 1), "qualify": (1_000, 1_000), "qualify_reps": (3, 1),
    "qualify_large": (10_000, 0), "qualify_large_reps": (2, 0), "tasks": (10_000, 2_000), "latency_s": (15.0, 8.0),
    "read_leads": (100_000, 10_000), "read_seconds": (5.0, 2.0), "analytics_leads": (100_000, 10_000), "analytics_repeat": (30, 10),
}


def size(name: str, quick: bool):
    return SIZES[name][1 if quick else 0]


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def plan(endpoints: common.Endpoints, quick: bool) -> list[tuple[str, int, Callable[[], Awaitable[dict]], Callable[[dict], dict]]]:
    """(section, repetitions, one run, the run's figures -> the sections it fills)."""
    q = quick
    rows = size("import_rows", q)
    steps = [
        # One step for both: the scale-out runs share the warm-up and the bare consumer's run (x1 is run
        # again there, beside the intake's service run: the two should agree within noise).
        ("leads_intake", size("leads_reps", q), lambda: bench_leads.measure(endpoints, size("leads", q), True, (1, 2, 3)),
         lambda f: {"leads_intake": f, **scale_sections(f)}),
        ("imports", 1, lambda: bench_import.measure(endpoints, rows), lambda f: {"import_csv_100k": f["csv"], "import_xlsx_100k": f["xlsx"]}),
        ("import_csv_1k", size("cli_1k_reps", q), lambda: bench_import_cli.measure_cli(endpoints, 1_000), lambda f: {"import_csv_1k": f}),
        ("import_csv_10k", size("cli_10k_reps", q), lambda: bench_import_cli.measure_cli(endpoints, 10_000), lambda f: {"import_csv_10k": f}),
        ("qualification", size("qualify_reps", q), lambda: bench_flow.measure(endpoints, size("qualify", q), size("tasks", q)), lambda f: f),
    ]
    if size("qualify_large", q):
        steps.append(("qualification_10k", size("qualify_large_reps", q), lambda: bench_flow.measure(endpoints, size("qualify_large", q), 0),
                      lambda f: {"qualification_10k": f["qualification"]}))
    steps += [
        ("latency", 1, lambda: bench_latency.measure(endpoints, 500, size("latency_s", q)), lambda f: {"latency": f}),
        ("reads", 1, lambda: bench_read.measure(endpoints, size("read_leads", q), 4, size("read_seconds", q)), lambda f: {"reads": f}),
        ("analytics", 1, lambda: analytics(endpoints, size("analytics_leads", q), size("analytics_repeat", q)), lambda f: {"analytics": f}),
    ]
    return steps


def scale_sections(figures: dict) -> dict:
    """The scale-out runs: rate and service CPU per lead with 1, 2 and 3 processes on six partitions."""
    return {"scale_out": {"leads": figures["leads"], "bare_per_second": figures["bare_per_second"], "partitions": 6,
                          "processes": figures["scale_out"]}}


async def analytics(endpoints: common.Endpoints, leads: int, repeat: int) -> dict:
    figures = await bench_analytics.measure(endpoints, leads, repeat)
    await common.drop_prefix(endpoints, figures.pop("prefix"))
    return figures


PRINTERS: dict[str, Callable[[dict], None]] = {
    "leads_intake": bench_leads.print_table,
    "reads": bench_read.print_table,
    "latency": bench_latency.print_table,
    "analytics": bench_analytics.print_table,
}


def print_section(name: str, figures: dict) -> None:
    if name == "qualification":
        bench_flow.print_table(figures)
    elif name == "imports":
        bench_import.print_table(figures)
    elif name in ("import_csv_1k", "import_csv_10k"):
        bench_import_cli.print_table(figures["rows"], figures)
    elif name == "scale_out":
        print(f"\nscale-out, {figures['leads']:,} creates on 6 partitions (bare {figures['bare_per_second']:,.0f}/s)")
        for n, row in figures["processes"].items():
            print(f"  {n} leads process(es): {row['per_second']:,.0f} leads/s ({row['ratio_to_bare']:.2f} of bare), "
                  f"service CPU {row['service_cpu_us_per_lead']:,.0f} µs per lead, Kafka {row.get('kafka_us_per_lead', 0):,.0f} (steady span)")
    elif name in PRINTERS:
        PRINTERS[name](figures)


def summary(document: dict) -> None:
    meta = document["meta"]
    m, v = meta["machine"], meta["versions"]
    print(f"\n== benchmarks {meta['date']} ({'quick' if meta['quick'] else 'full'} run, {meta['seconds']:.0f} s, commit {meta['commit']})")
    print(f"machine: {m['nproc']} cores, {m['memory_gb']} GB, {m['cpu_model']}; load during the run: "
          f"loadavg {meta['load']['loadavg_start']:.1f} -> {meta['load']['loadavg_end']:.1f}, machine CPU busy {meta['load']['cpu_busy_pct']:.0f}%")
    print("versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    if meta.get("stack"):
        print(f"stack: {meta['stack']['kafka_brokers']} Kafka node(s), JVM {meta['stack']['kafka_jvm']}")
    if meta.get("step_seconds"):
        print("seconds per step: " + ", ".join(f"{k} {val:,.0f}" for k, val in meta["step_seconds"].items()))
    print(f"\n{'figure':40} {'value':>12} {'spread':>22}  target")
    for key in results.SHOWN_KEYS:
        value = results.lookup(document, key)
        if value is None and key not in results.REQUIRED_KEYS:
            continue
        section, field = key.split(".", 1)
        spread = results.lookup(document, f"{section}.spread.{field}")
        spread_text = f"[{spread[0]:,.1f} .. {spread[1]:,.1f}]" if spread else ""
        shown = f"{value:,.2f}" if isinstance(value, (int, float)) else "missing"
        print(f"{key:40} {shown:>12} {spread_text:>22}  {results.verdict(key, value if isinstance(value, (int, float)) else None)}")


async def run(args) -> int:
    stack = Stack()
    started_stack = not (stack.kafka.running() and stack.ferretdb.process.running())
    began = datetime.now(UTC)
    load_start, busy_start = os.getloadavg()[0], cpu_busy()
    sections: dict[str, dict] = {}
    step_seconds: dict[str, float] = {}  # where the run's time goes (the full run should stay under 15 minutes)
    failed: list[str] = []
    try:
        endpoints = common.stack_endpoints(stack)
        only = set(args.only.split(",")) if args.only else None
        for name, reps, once, fill in plan(endpoints, args.quick):
            if only and name not in only:
                continue
            print(f"\n### {name} ({reps} repetition{'s' if reps > 1 else ''})", file=sys.stderr)
            t0 = time.perf_counter()
            try:
                runs = [await once() for _ in range(reps)]
            except Exception as exc:  # one benchmark failing still leaves the others' figures
                step_seconds[name] = round(time.perf_counter() - t0, 1)
                traceback.print_exc()
                failed.append(name)
                sections[name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            for section, figures in fill_all(runs, fill).items():
                sections[section] = figures
            shown = results.combine(runs)
            try:
                print_section(name, shown)
                if name == "leads_intake":
                    print_section("scale_out", scale_sections(shown)["scale_out"])
            except Exception:  # a table that cannot print must not lose the figures
                traceback.print_exc()
            step_seconds[name] = round(time.perf_counter() - t0, 1)
            print(f"({name}: {step_seconds[name]:.0f} s)", file=sys.stderr)
    finally:
        if started_stack:
            stack.down()
    busy_end = cpu_busy()
    load = {"loadavg_start": load_start, "loadavg_end": os.getloadavg()[0],
            "cpu_busy_pct": 100 * (busy_end[0] - busy_start[0]) / max(1, busy_end[1] - busy_start[1])}
    out = Path(args.out)
    document = results.document(sections, quick=args.quick, started=began, load=load)
    document["meta"]["step_seconds"] = step_seconds
    document["meta"]["stack"] = {"kafka_brokers": len(stack.kafka.nodes), "kafka_jvm": " ".join(stack.kafka.jvm_options())}
    if args.only and out.exists():
        document = results.merge(json.loads(out.read_text()), document)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, ensure_ascii=False, default=str) + "\n")
    summary(document)
    print("\n" + results.markdown(document))
    missing = results.missing_keys(document)
    print(f"\nwritten: {out}" + (f"; missing figures: {', '.join(missing)}" if missing else ""))
    if failed:
        print(f"failed: {', '.join(failed)} (tracebacks above)")
    return 1 if failed or (missing and not args.only) else 0


def fill_all(runs: list[dict], fill: Callable[[dict], dict]) -> dict[str, dict]:
    """Each section a run fills, combined over the repetitions (median and spread)."""
    per_section: dict[str, list[dict]] = {}
    for figures in runs:
        for section, part in fill(figures).items():
            per_section.setdefault(section, []).append(part)
    return {section: results.combine(parts) for section, parts in per_section.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes, fewer repetitions (minutes)")
    parser.add_argument("--only", default="", help="only these steps, their sections replaced in --out (the others kept): " + ", ".join(n for n, *_ in plan(None, False)))  # type: ignore[arg-type]
    parser.add_argument("--out", default=str(results.ROOT / "bench/results/latest.json"))
    args = parser.parse_args()
    common.quiet_logs()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
