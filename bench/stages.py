"""Where a flow benchmark's time goes: each service's batches from its /metrics, and optional py-spy profiles."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families


class BatchProbe:
    """Reads the services' own counters (crmkit/metrics.py): batches handled, their time, records consumed."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports

    async def snapshot(self) -> dict[str, Counter[str]]:
        found: dict[str, Counter[str]] = {}
        async with httpx.AsyncClient(timeout=10) as client:
            for name, port in self.ports.items():
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                counts: Counter[str] = Counter()
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        if sample.name in ("crm_batch_seconds_count", "crm_batch_seconds_sum"):
                            counts[f"{sample.labels['handler']}|{sample.name.rsplit('_', 1)[1]}"] += sample.value
                        elif sample.name == "crm_consumed_total":
                            counts[f"consumed|{sample.labels['topic']}"] += sample.value
                        elif sample.name == "crm_published_total":
                            counts[f"published|{sample.labels['topic']}|{sample.labels['type']}"] += sample.value
                found[name] = counts
        return found

    @staticmethod
    def between(before: dict[str, Counter[str]], after: dict[str, Counter[str]], seconds: float) -> dict[str, dict]:
        """Per service: records consumed, batches and records a batch (all its handlers), and per handler the
        share of the stage's wall time spent handling; records published, by topic and type."""
        stages: dict[str, dict] = {}
        for name, now in after.items():
            delta = now - before.get(name, Counter())
            consumed = sum(v for k, v in delta.items() if k.startswith("consumed|"))
            handlers = sorted(k.split("|", 1)[0] for k in delta if k.endswith("|count"))
            batches = sum(delta[f"{h}|count"] for h in handlers)
            stages[name] = {
                "consumed": int(consumed), "batches": int(batches), "records_per_batch": consumed / batches if batches else 0.0,
                "busy_share": {h: delta[f"{h}|sum"] / seconds if seconds else 0.0 for h in handlers},
                "published": {k.split("|", 1)[1]: int(v) for k, v in sorted(delta.items()) if k.startswith("published|") and v},
            }
        return stages


def print_stages(stages: dict[str, dict]) -> None:
    for name, row in sorted(stages.items()):
        busy = ", ".join(f"{h} {share:.0%}" for h, share in row["busy_share"].items())
        print(f"    {name}: {row['consumed']:,} records in {row['batches']} batches ({row['records_per_batch']:,.0f} a batch); "
              f"share of the time in a handler: {busy}")


class Profiles:
    """py-spy sampling each service process during a stage (``--profile DIR``); folded stacks, one file each."""

    def __init__(self, folder: Path | None, pids: dict[str, int]) -> None:
        self.folder = folder
        self.pids = pids
        self._running: list[subprocess.Popen] = []
        self._files: dict[str, Path] = {}
        if folder is not None:
            if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
                raise SystemExit("--profile needs py-spy (pip install py-spy) next to this Python")
            folder.mkdir(parents=True, exist_ok=True)

    def start(self, stage: str) -> None:
        if self.folder is None:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        for name, pid in self.pids.items():
            out = self.folder / f"{stage}-{name}.txt"
            self._files[name] = out
            self._running.append(subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", os.environ.get("BENCH_SPY_RATE", "50"), "--nonblocking", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self, top: int = 12) -> None:
        """Stop the samplers (they write on SIGINT) and print each service's heaviest functions."""
        for proc in self._running:
            proc.send_signal(signal.SIGINT)
        for proc in self._running:
            proc.wait(timeout=60)
        self._running = []
        for name, path in self._files.items():
            if path.exists():
                print(f"  py-spy {path.name}:")
                for line in heaviest(path.read_text(), top):
                    print(f"    {line}")
        self._files = {}


_LINE = re.compile(r":\d+\)$")


def heaviest(folded: str, top: int) -> list[str]:
    """The functions most often on the stack (inclusive share of the samples) in py-spy's folded output."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        for frame in set(_LINE.sub(")", f) for f in stack.split(";")):
            if not frame.endswith(_PLUMBING):
                inclusive[frame] += n
    return [f"{n / total:6.1%}  {frame}" for frame, n in inclusive.most_common(top)] if total else []


# Frames every sample has (the event loop, the server, FastStream's and the consumer's plumbing): left out.
_PLUMBING = tuple(f"{name})" for name in (
    "<frozen runpy>", "__main__.py", "crmkit/service.py", "uvicorn/server.py", "uvicorn/_compat.py", "asyncio/runners.py",
    "asyncio/base_events.py", "asyncio/events.py", "fast_depends/utils.py", "fast_depends/use.py", "fast_depends/core/model.py",
))
