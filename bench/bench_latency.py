"""Latency under steady load: create -> crm.lead.created and qualify -> crm.lead.qualified, beside a bare hop.

In one run on the local stack, with leads and qualification as separate processes:
  load       ``--rate`` commands per second for ``--seconds``, half crm.lead.create of new leads and half
             crm.lead.qualify (deal_and_company) of leads created beforehand;
  latency    from each command's send to its event arriving at a consumer in this process: p50/p95/p99;
  bare hop   at the same time, a separate process that consumes one topic and produces each record to
             another (aiokafka, no work): the round trip of a probe sent 50 times a second, the floor of
             one service hop on this machine under this load.

Run: .venv/bin/python bench/bench_latency.py [--rate 500] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)
from bench_flow import qualify_records  # noqa: E402
from bench_leads import create_records  # noqa: E402
from common import Endpoints, EndOffsets, until_committed, percentile  # noqa: E402

from contracts.topics import ALL_TOPICS, LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS  # noqa: E402
from crmkit.topics import ensure_topics  # noqa: E402
from crmkit.settings import KafkaSettings  # noqa: E402

from processes import ROOT, free_port, start_service, stop_all  # noqa: E402  (bench/processes.py)
from stages import BatchProbe, print_stages  # noqa: E402  (bench/stages.py)

HOP_IN, HOP_OUT = "bench.hop.in", "bench.hop.out"


async def echo(bootstrap: str, prefix: str) -> None:
    """The bare hop (run in its own process): consume, produce the same bytes, commit, as a service would."""
    from tests.support import register_kafka

    # The parent's credentials came down in the KAFKA_* variables; the helpers connect with them only once told.
    register_kafka(KafkaSettings(kafka_bootstrap_servers=bootstrap))
    reader = common.consumer(bootstrap, prefix + HOP_IN, group_id=prefix + "hop", auto_offset_reset="earliest",
                             enable_auto_commit=False)
    writer = common.producer(bootstrap, linger_ms=0)
    await reader.start()
    await writer.start()
    try:
        while True:
            batch = await reader.getmany(timeout_ms=100)
            acks = [await writer.send(prefix + HOP_OUT, r.value, key=r.key) for records in batch.values() for r in records]
            if acks:
                await asyncio.gather(*acks)
                await reader.commit()
    finally:
        await reader.stop()
        await writer.stop()


def stats(samples: list[float]) -> dict:
    if not samples:
        return {"n": 0}
    return {"n": len(samples), "p50_ms": percentile(samples, 0.5), "p95_ms": percentile(samples, 0.95),
            "p99_ms": percentile(samples, 0.99), "max_ms": max(samples)}


async def measure(endpoints: Endpoints, rate: int = 500, seconds: float = 20.0) -> dict:
    prefix = common.new_prefix("lat")
    per_kind = int(rate * seconds / 2)
    await ensure_topics(KafkaSettings(kafka_bootstrap_servers=endpoints.kafka), [prefix + t for t in (*ALL_TOPICS, HOP_IN, HOP_OUT)], 6)
    await common.send_all(endpoints.kafka, [common.grant_record(prefix)])
    procs: dict[str, subprocess.Popen] = {}
    admin = common.admin(endpoints.kafka)
    await admin.start()
    sent: dict[tuple[str, str], float] = {}
    got: dict[tuple[str, str], float] = {}
    hop_sent: dict[bytes, float] = {}
    hop_took: list[float] = []
    watcher = common.consumer(endpoints.kafka, prefix + LEADS_EVENTS, prefix + QUALIFICATION_EVENTS, prefix + HOP_OUT,
                              auto_offset_reset="latest")
    sender = common.producer(endpoints.kafka, linger_ms=1)
    ports = {name: free_port() for name in ("leads", "qualification")}
    batch_probe = BatchProbe(ports)  # each service's batches from its /metrics: where a hop's time goes
    try:
        for name in ("leads", "qualification"):
            extra = {"DUPLICATE_CHECK": "false"} if name == "leads" else {}
            procs[name] = start_service(name, {
                **common.service_connection(endpoints), "TOPIC_PREFIX": prefix, "DATABASE": f"{prefix.strip('.')}_{name}",
                "GROUP_ID": prefix + name, "SERVICE_PRINCIPALS": '["bench"]', "HTTP_PORT": str(ports[name]), **extra})
        procs["hop"] = subprocess.Popen([sys.executable, __file__, "--echo", endpoints.kafka, prefix], cwd=ROOT)
        print(f"creating the {per_kind:,} leads to qualify ...", file=sys.stderr)
        await common.send_all(endpoints.kafka, create_records(prefix, per_kind))
        await until_committed(admin, prefix + "leads", prefix + LEADS_COMMANDS, per_kind)
        async with EndOffsets(endpoints.kafka, prefix + LEADS_EVENTS) as offsets:
            lead_events = await offsets.total()
        await until_committed(admin, prefix + "qualification", prefix + LEADS_EVENTS, lead_events)
        await watcher.start()
        await sender.start()
        await asyncio.sleep(1.0)  # the watcher has its partitions before the first probe

        async def watch() -> None:
            while True:
                for records in (await watcher.getmany(timeout_ms=50)).values():
                    now = time.perf_counter()
                    for record in records:
                        if record.topic.endswith(HOP_OUT):
                            if record.value in hop_sent:
                                hop_took.append((now - hop_sent.pop(record.value)) * 1000)
                            continue
                        message = json.loads(record.value)
                        key = (message["type"], message.get("subject") or "")
                        if key in sent and key not in got:
                            got[key] = now

        async def probe() -> None:
            n = 0
            while True:
                value = f"probe-{n}".encode()
                hop_sent[value] = time.perf_counter()
                await sender.send(prefix + HOP_IN, value, key=value)
                n += 1
                await asyncio.sleep(0.02)

        creates = create_records(prefix, per_kind, start=per_kind)
        qualifies = qualify_records(prefix, per_kind)
        watching = asyncio.create_task(watch())
        probing = asyncio.create_task(probe())
        print(f"{rate} commands/s for {seconds:g} s ...", file=sys.stderr)
        await wait_ready(ports)
        batches_before = await batch_probe.snapshot()
        meter = common.CpuMeter({name: proc.pid for name, proc in procs.items()} | {"kafka": endpoints.kafka_pid,
                                                                                     "ferretdb": endpoints.ferretdb_pid}).start()
        started = time.perf_counter()
        for i in range(2 * per_kind):
            due = started + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            topic, key, value = next(creates) if i % 2 == 0 else next(qualifies)
            kind = "crm.lead.created" if i % 2 == 0 else "crm.lead.qualified"
            sent[(kind, key.decode())] = time.perf_counter()
            await sender.send(topic, value, key=key)
        achieved = 2 * per_kind / (time.perf_counter() - started)
        # A path slower than the load drains its backlog afterwards: give it the time that takes.
        drain_s = 60 + per_kind / 20
        deadline = time.monotonic() + drain_s
        while len(got) < len(sent) and time.monotonic() < deadline:
            common_alive(procs)
            await asyncio.sleep(0.1)
        busy_s = time.perf_counter() - started
        meter.sample()
        stages = BatchProbe.between(batches_before, await batch_probe.snapshot(), busy_s)
        probing.cancel()
        watching.cancel()
    finally:
        await sender.stop()
        await watcher.stop()
        stop_all(list(procs.values()))
        await admin.close()
        await common.drop_prefix(endpoints, prefix)
    took = {kind: [(got[k] - sent[k]) * 1000 for k in sent if k[0] == kind and k in got] for kind in ("crm.lead.created", "crm.lead.qualified")}
    missing = len(sent) - len(got)
    if missing:
        raise RuntimeError(f"{missing} of {len(sent)} events did not arrive within {drain_s:.0f} s of the load's end")
    create, qualify, hop = stats(took["crm.lead.created"]), stats(took["crm.lead.qualified"]), stats(hop_took)
    return {
        "rate": rate, "achieved_rate": achieved, "seconds": seconds, "create": create, "qualify": qualify, "bare_hop": hop,
        "create_p99_ms": create["p99_ms"], "qualify_p99_ms": qualify["p99_ms"], "bare_hop_p99_ms": hop["p99_ms"],
        "qualify_p99_in_hops": qualify["p99_ms"] / hop["p99_ms"],
        "in_hops": {kind: {q: figures[f"{q}_ms"] / hop[f"{q}_ms"] for q in ("p50", "p95", "p99")}
                    for kind, figures in (("create", create), ("qualify", qualify))},
        # Until the last event arrived: the share of a core each process used, and its batches.
        "cores_used": {name: round(used / busy_s, 2) for name, used in meter.used.items()}, "stages": stages,
    }


async def wait_ready(ports: dict[str, int], timeout: float = 120.0) -> None:
    """Until every service answers /health/ready (its consumers subscribed), so the load meets running services."""
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as client:
        for name, port in ports.items():
            while True:
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/health/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} was not ready within {timeout:.0f} s")
                await asyncio.sleep(0.2)


def common_alive(procs: dict[str, subprocess.Popen]) -> None:
    for name, proc in procs.items():
        if proc.poll() is not None:
            raise RuntimeError(f"the {name} process exited during the benchmark (its stderr is above)")


def print_table(figures: dict) -> None:
    print(f"\nlatency under {figures['rate']} commands/s (achieved {figures['achieved_rate']:.0f}/s) for {figures['seconds']:g} s")
    print(f"{'path':42} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, key in (("crm.lead.create -> crm.lead.created", "create"), ("crm.lead.qualify -> crm.lead.qualified", "qualify"),
                       ("bare hop (consume -> produce, 1 process)", "bare_hop")):
        s = figures[key]
        print(f"{label:42} {s['n']:6d} {s['p50_ms']:8.1f} {s['p95_ms']:8.1f} {s['p99_ms']:8.1f} {s['max_ms']:8.1f}")
    for kind in ("create", "qualify"):
        hops = figures.get("in_hops", {}).get(kind)
        if hops:
            print(f"{kind} in bare hops: p50 {hops['p50']:.1f}, p95 {hops['p95']:.1f}, p99 {hops['p99']:.1f}")
    print(f"qualify p99 = {figures['qualify_p99_in_hops']:.1f} bare hops' p99 (target issue 21: within 5)")
    if figures.get("cores_used"):
        print("cores used until the last event: " + ", ".join(f"{k} {v:.2f}" for k, v in figures["cores_used"].items()))
        print_stages(figures.get("stages", {}))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=500, help="commands per second (default 500)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the load (default 20)")
    parser.add_argument("--echo", nargs=2, metavar=("BOOTSTRAP", "PREFIX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    common.quiet_logs()
    if args.echo:
        await echo(*args.echo)
        return
    print_table(await measure(common.stack_endpoints(), args.rate, args.seconds))


if __name__ == "__main__":
    asyncio.run(main())
