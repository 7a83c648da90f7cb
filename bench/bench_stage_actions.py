"""Stage-actions benchmark: what the actions consumer and webhook deliveries cost per lead, against the write path alone.

Each contender, on its own topics and database, takes the same N ``crm.lead.create`` commands already
on the topic into a pipeline created beforehand (the service is started once for that, then again
with the clock running):
  write path   the leads service with stage actions off: every lead stored and announced;
  + consumer   stage actions on, the pipeline has none: the second consumer group reads every event;
  + set_fields one field action on the first stage: every lead also gets a crm.lead.run-stage-action
               and its update;
  + webhook    one webhook action on the first stage, posted to a receiver in another process: every
               lead also gets a delivery stored, signed, posted and marked delivered.

For each: the wall time and the CPU per lead of this process (the service), of Kafka, of FerretDB and
of the receiver, from /proc/<pid>/stat, and the service's CPU per lead as a ratio to the write path's.

Run: .venv/bin/python bench/bench_stage_actions.py [--leads 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import EndOffsets, new_prefix, stack_meter, until_committed  # noqa: E402

from contracts import build_message  # noqa: E402
from contracts.leads import CreateLead, CreatePipeline  # noqa: E402
from contracts.topics import LEADS_COMMANDS, LEADS_EVENTS  # noqa: E402
from crmkit.topics import ensure_topics  # noqa: E402
from processes import free_port  # noqa: E402
from services.leads.app import create_app  # noqa: E402
from services.leads.settings import LeadsSettings  # noqa: E402

RECEIVER = textwrap.dedent("""
    import sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route
    async def hook(request):
        await request.body()
        return Response(status_code=204)
    uvicorn.run(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
""")


def settings(endpoints, prefix: str, actions: bool) -> LeadsSettings:
    return LeadsSettings(
        kafka_bootstrap_servers=endpoints.kafka, mongodb_url=endpoints.mongodb, topic_prefix=prefix,
        database=f"{prefix.strip('.')}_leads", group_id=f"{prefix}leads", duplicate_check=False,
        batch_max_records=1000, batch_timeout_ms=50, log_level="WARNING", service_principals=["bench"],
        stage_actions=actions, webhook_allowed_private_hosts=["127.0.0.1"],
    )


def stages(on_enter: list[dict]) -> list[dict]:
    return [
        {"stage_id": "new", "name": "New", "status": "new", "on_enter": on_enter},
        {"stage_id": "work", "name": "Work", "status": "in_progress"},
        {"stage_id": "won", "name": "Won", "status": "qualified"},
        {"stage_id": "lost", "name": "Lost", "status": "unqualified"},
    ]


async def contender(endpoints, name: str, count: int, actions: bool, on_enter: list[dict], receiver_pid: int | None) -> dict:
    prefix = new_prefix("sa")
    config = settings(endpoints, prefix, actions)
    client = common.admin(endpoints.kafka)
    await client.start()
    try:
        await ensure_topics(config, [prefix + LEADS_COMMANDS, prefix + LEADS_EVENTS], 6)
        pipeline = build_message(CreatePipeline(pipeline_id="bench", name="Bench", stages=stages(on_enter)), source="bench", actorid="bench")
        await common.send_all(endpoints.kafka, [(prefix + LEADS_COMMANDS, b"bench", pipeline.to_json_bytes())])
        service = create_app(config)
        await service.start()  # the pipeline first: the creates below name it
        try:
            await until_committed(client, config.group_id, prefix + LEADS_COMMANDS, 1)
        finally:
            await service.stop()
        creates = (
            build_message(CreateLead(lead_id=f"L{i}", title=f"Lead {i}", pipeline_id="bench", source="bench"), source="bench", actorid="bench")
            for i in range(count)
        )
        await common.send_all(endpoints.kafka, ((prefix + LEADS_COMMANDS, m.subject.encode(), m.to_json_bytes()) for m in creates))
        async with EndOffsets(endpoints.kafka, prefix + LEADS_COMMANDS) as commands:
            target = await commands.total()
        service = create_app(config)
        db = service.db
        meter = stack_meter(endpoints, receiver=receiver_pid).start()
        started = time.perf_counter()
        await service.start()
        try:
            await until_committed(client, config.group_id, prefix + LEADS_COMMANDS, target + (count if on_enter and on_enter[0]["kind"] == "set_fields" else 0))
            if actions:
                async with EndOffsets(endpoints.kafka, prefix + LEADS_EVENTS) as events:
                    while True:  # the actions group has read every event there is
                        total = await events.total()
                        committed = await client.list_consumer_group_offsets(config.group_id + "-actions")
                        if sum(m.offset for tp, m in committed.items() if tp.topic == prefix + LEADS_EVENTS) >= total:
                            break
                        await asyncio.sleep(0.1)
            if on_enter and on_enter[0]["kind"] == "webhook":
                while await db["webhook_deliveries"].count_documents({"status": "delivered"}) < count:
                    await asyncio.sleep(0.1)
            elapsed = time.perf_counter() - started
            meter.sample()
        finally:
            await service.stop()
    finally:
        await client.close()
        await common.drop_prefix(endpoints, prefix)
    per_lead = meter.per_item_us(count)
    return {"name": name, "leads": count, "seconds": elapsed, "cpu_us_per_lead": per_lead}


async def main(count: int) -> None:
    common.quiet_logs()
    endpoints = common.stack_endpoints()
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        await asyncio.sleep(1.5)  # the receiver's start (a benchmark, not a test)
        url = f"http://127.0.0.1:{port}/hook"
        runs = [
            await contender(endpoints, "write path (actions off)", count, False, [], None),
            await contender(endpoints, "+ actions consumer, no actions", count, True, [], None),
            await contender(endpoints, "+ one set_fields action", count, True,
                            [{"action_id": "tag", "kind": "set_fields", "set_fields": {"utm_source": "stage"}}], None),
            await contender(endpoints, "+ one webhook action", count, True,
                            [{"action_id": "hook", "kind": "webhook", "url": url, "secret": "bench-secret-0123456789"}], receiver.pid),
        ]
    finally:
        receiver.terminate()
        receiver.wait(10)
    base = runs[0]["cpu_us_per_lead"]["bench"]
    print(f"{'contender':34} {'s':>7} {'service µs/lead':>16} {'ratio':>6} {'kafka':>8} {'ferretdb':>9} {'receiver':>9}")
    for run in runs:
        cpu = run["cpu_us_per_lead"]
        print(f"{run['name']:34} {run['seconds']:7.1f} {cpu['bench']:16.0f} {cpu['bench'] / base:6.2f} {cpu.get('kafka', 0):8.0f}"
              f" {cpu.get('ferretdb', 0):9.0f} {cpu.get('receiver', 0):9.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000)
    asyncio.run(main(parser.parse_args().leads))
