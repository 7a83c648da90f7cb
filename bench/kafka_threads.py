"""Where Kafka's CPU goes, by thread group (JIT, GC, network, request handlers, ...): /proc task times, names from jstack."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Thread names (jstack's, in full; /proc cuts them to 15 characters) to a group, first match wins.
GROUPS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(pattern)) for name, pattern in (
    ("jit", r"^C[12] CompilerThread"),
    ("gc", r"^(GC Thread|G1 |VM Thread|VM Periodic)"),
    ("network", r"^data-plane-kafka-(network-thread|socket-acceptor)"),
    ("requests", r"^data-plane-kafka-request-handler"),
    ("groups", r"^group-coordinator"),
    ("replication", r"^ReplicaFetcherThread"),
    ("kraft", r"^(kafka-\d+-(raft|metadata|snapshot)|quorum-controller|controller-\d+|broker-\d+-to-controller|broker-\d+-lifecycle)"),
))
_NID = re.compile(r'^"(?P<name>[^"]+)".* nid=(?P<nid>0x[0-9a-f]+)', re.MULTILINE)


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Java thread name, from ``jstack`` (empty when there is no JDK)."""
    jstack = shutil.which("jstack")
    if jstack is None:
        return {}
    out = subprocess.run([jstack, str(pid)], capture_output=True, text=True, timeout=60).stdout
    return {int(m["nid"], 16): m["name"] for m in _NID.finditer(out)}


def group_of(name: str) -> str:
    return next((group for group, pattern in GROUPS if pattern.search(name)), "other")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid`` so far."""
    found: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended
        fields = stat[stat.rindex(")") + 2:].split()
        found[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


class KafkaThreads:
    """CPU of each Kafka node's thread groups between ``start()`` and ``sample()``; names are read after
    the sample (jstack pauses the JVM for a moment, outside the measured span)."""

    def __init__(self, pids: tuple[int, ...]) -> None:
        self.pids = pids
        self._before: dict[tuple[int, int], float] = {}
        self._after: dict[tuple[int, int], float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> KafkaThreads:
        self._before = {(pid, tid): s for pid in self.pids for tid, s in thread_cpu(pid).items()}
        return self

    def sample(self) -> dict[str, float]:
        self._after = {(pid, tid): s for pid in self.pids for tid, s in thread_cpu(pid).items()}
        names = {(pid, tid): name for pid in self.pids for tid, name in thread_names(pid).items()}
        used: dict[str, float] = {}
        self.by_name: dict[str, float] = {}  # each thread's name (its number cut off) to its CPU, for a closer look
        for key, seconds in self._after.items():
            name = names.get(key, "")
            group = group_of(name)
            spent = seconds - self._before.get(key, 0.0)
            used[group] = used.get(group, 0.0) + spent
            short = re.sub(r"[-#]?\d+$", "", name)
            self.by_name[short] = self.by_name.get(short, 0.0) + spent
        self.used = used
        return used

    def per_item_us(self, items: int) -> dict[str, float]:
        return {group: round(seconds / items * 1e6, 1) for group, seconds in sorted(self.used.items(), key=lambda kv: -kv[1])}
