"""``crm leads recount``: count every board stage again from the leads' index ranges into a new epoch of the counters."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import typer
from rich.console import Console

from crmkit.mongo import make_client
from services.leads.counters import CountsBusy, LeadCounters
from services.leads.repository import LeadRepository, PipelineRepository
from services.leads.settings import LeadsSettings

from .stack import StackConfig

console = Console(stderr=True)


async def recount_board(settings: LeadsSettings, grace_s: float | None = None) -> dict[str, Any]:
    """What the command does, for any caller: the counts as counted (raises CountsBusy when another recount holds them)."""
    client = make_client(settings.mongodb_url)
    try:
        db = client[settings.database]
        counters = LeadCounters(db, grace_s=settings.board_counters_grace_s, lease_s=settings.board_counters_lease_s)
        return await counters.rebuild(LeadRepository(db), PipelineRepository(db), grace_s=grace_s)
    finally:
        await client.close()


def recount(
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
    grace: float = typer.Option(
        None, "--grace", min=0.0, help="Seconds to wait for batches already storing leads (LEADS_BOARD_COUNTERS_GRACE_S, else 10).",
    ),
) -> None:
    """Count the board's stages again from the stored leads (after a restore of the database or a lost counter write).

    Boards count index ranges meanwhile, and the leads service's batches wait for it (a few seconds).
    The database is the leads service's: LEADS_MONGODB_URL or MONGODB_URL (else the local stack's) and LEADS_DATABASE.
    """
    overrides: dict[str, Any] = {}
    if not (os.environ.get("LEADS_MONGODB_URL") or os.environ.get("MONGODB_URL")):
        overrides["mongodb_url"] = StackConfig.from_env().mongodb_url
    settings = LeadsSettings(**overrides)
    try:
        counted = asyncio.run(recount_board(settings, grace))
    except CountsBusy as exc:
        console.print(f"[red]not recounted:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(counted, ensure_ascii=False, indent=2))
        return
    console.print(f"board counts rebuilt (epoch {counted['epoch']}): {counted['leads']} live leads "
                  f"in {counted['pipelines']} pipelines, {counted['seconds']:.1f} s")
    for stage, n in counted["stages"].items():
        typer.echo(f"{stage}\t{n}")
