"""The analytics dashboard in a real browser: headless Chromium (Debian's package) reads its figures and draws it."""

from __future__ import annotations

import asyncio
import shutil
import socket
from html.parser import HTMLParser

import pytest
import uvicorn
from typer.testing import CliRunner
from PIL import Image

from contracts.topics import DIRECTORY_EVENTS
from crmctl.cli import app as crm
from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from tests import analytics_data as data
from tests.integration.test_analytics import TOKENS, caught_up, grants
from services.analytics.app import CONSUMES
from tests.support import Producer, make_topics, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
)


class _Figures(HTMLParser):
    """Collects report tables (data-report / data-col cells), chart bars and anything loaded from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict[str, str]]] = {}
        self.bars: dict[str, list[tuple[str, str]]] = {}
        self.outside: list[str] = []
        self.scripts = 0
        self._table: str | None = None
        self._chart: str | None = None
        self._col: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        for name in ("src", "href"):
            if (a.get(name) or "").startswith(("http:", "https:", "//")):
                self.outside.append(a[name] or "")
        if tag == "table" and a.get("data-report"):
            self._table = a["data-report"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append({})
        elif tag == "td" and self._table:
            self._col = a.get("data-col")
            self.tables[self._table][-1][self._col or ""] = ""
        elif tag == "svg" and a.get("data-chart"):
            self._chart = a["data-chart"]
            self.bars[self._chart] = []
        elif tag == "g" and self._chart and a.get("data-label") is not None:
            self.bars[self._chart].append((a["data-label"] or "", a.get("data-value") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "td":
            self._col = None
        elif tag == "svg":
            self._chart = None

    def handle_data(self, text: str) -> None:
        if self._table and self._col:
            self.tables[self._table][-1][self._col] += text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _chromium(*args: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--hide-scrollbars", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


async def test_dashboard_in_headless_chromium(endpoints, isolation, settings_for, tmp_path) -> None:
    await make_topics(endpoints, isolation.prefix, CONSUMES)
    settings = settings_for(AnalyticsSettings, "analytics", store_path=str(tmp_path / "dash.duckdb"), tokens=TOKENS)
    async with Producer(endpoints.kafka, isolation.prefix) as producer:
        for message in grants():
            await producer.send(DIRECTORY_EVENTS, message, key=message.data.user_id)
        for topic, message in data.all_events():
            await producer.send(topic, message)
    service = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(service.asgi(), host="127.0.0.1", port=port, lifespan="on", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: service.health.started, timeout=60, what="the analytics service to start")
        await caught_up(service)
        url = f"http://127.0.0.1:{port}/?token=tok-alice"
        page = _Figures()
        # Chromium's --dump-dom and --screenshot read the page through DevTools, which needs scripting on
        # (with --blink-settings=scriptEnabled=false they print nothing): the page itself has no script.
        page.feed((await _chromium("--dump-dom", url)).decode())

        assert page.scripts == 0 and page.outside == []
        funnel = [(r["stage_id"], int(r["reached"]), int(r["now_in"])) for r in page.tables["funnel"][1:]]
        assert funnel == [(s, reached, now) for s, reached, now, _, _ in data.FUNNEL_DEFAULT]
        assert [(label, float(v)) for label, v in page.bars["funnel"]] == [
            (name, float(reached)) for name, (_, reached, *_rest) in zip(("New", "Processing", "Qualified", "Unqualified"), data.FUNNEL_DEFAULT)
        ]
        assert [(label, float(v)) for label, v in page.bars["sources"]] == [(v, rate) for v, _, _, _, _, rate, _, _ in data.SOURCES]
        reasons = [(r["reason_id"], int(r["leads"])) for r in page.tables["reasons"][1:]]
        assert reasons == [(rid, n) for _, rid, _, n, _ in data.REASONS]
        trend = [(r["period_start"], int(r["created"]), int(r["qualified"])) for r in page.tables["trend"][1:]]
        assert trend == data.TREND_WEEK

        # The filter form is a plain GET form: the p2 pipeline's page shows p2's funnel.
        p2 = _Figures()
        p2.feed((await _chromium("--dump-dom", url + "&pipeline_id=p2&period=week")).decode())
        assert [(r["stage_id"], int(r["reached"])) for r in p2.tables["funnel"][1:]] == [(s, n) for s, n, *_ in data.FUNNEL_P2]

        shot = tmp_path / "dashboard.png"
        await _chromium(f"--screenshot={shot}", "--window-size=1400,1800", url)
        with Image.open(shot) as image:
            assert image.size == (1400, 1800)
            colours = {rgba[:3] for _, rgba in image.convert("RGBA").getcolors(maxcolors=1 << 20)}
        # A drawn page: the bars' blue and the qualified columns' green are on it, not only white and text.
        assert (0x3B, 0x6F, 0xB6) in colours, "no bars drawn"
        assert (0x2E, 0x9D, 0x5B) in colours, "no qualified columns drawn"

        # The CLI reads the same service: a table with the funnel's bars, JSON and CSV.
        def cli(*args: str):
            return asyncio.to_thread(CliRunner().invoke, crm, [*args, "--url", f"http://127.0.0.1:{port}", "--token", "tok-alice"])

        table = await cli("report", "funnel")
        assert table.exit_code == 0, table.output
        bars = [line for line in table.output.splitlines() if "█" in line]
        assert [line.split()[0] for line in bars] == ["New", "Processing", "Qualified", "Unqualified"]
        assert bars[0].count("█") == 40 and bars[1].count("█") == round(4 / 9 * 40)  # scaled to New's 9
        as_json = await cli("report", "sources", "--by", "utm_source", "--json")
        assert as_json.exit_code == 0, as_json.output
        assert '"value": "google"' in as_json.output
        as_csv = await cli("report", "reasons", "--source", "web", "--csv")
        assert as_csv.output.splitlines()[1:] == [",".join(map(str, r)) for r in data.REASONS_WEB]
        refused = await cli("report", "trend", "--period", "month")
        assert refused.exit_code == 1 and "period must be one of" in refused.output
        status = await cli("analytics", "status")
        assert '"lag": 0' in status.output and '"leads": 12' in status.output
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 60)
