"""The disqualification reasons of a pipeline: the defaults, and what administrators may change."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from services.qualification.domain.checks import actor_problems
from services.qualification.domain.model import DEFAULT_REASONS, Actor, Problem, Reason


def default_reasons() -> list[Reason]:
    return [Reason(reason_id=rid, text=text, text_ru=ru) for rid, text, ru in DEFAULT_REASONS]


def add_reason(
    actor: Actor, pipeline_id: str, pipeline_exists: bool, reasons: Sequence[Reason], reason: Reason
) -> tuple[list[Reason], list[Problem]]:
    problems = _admin_problems(actor, "edit disqualification reasons") + _pipeline_problems(pipeline_id, pipeline_exists)
    existing = next((r for r in reasons if r.reason_id == reason.reason_id), None)
    if existing is not None and existing != reason:
        problems.append(
            Problem("conflict", f"pipeline already has a reason {reason.reason_id!r}: {existing.text!r}", "reason_id")
        )
    if problems:
        return list(reasons), problems
    if existing is not None:
        return list(reasons), []
    return [*reasons, reason], []


def remove_reason(
    actor: Actor, pipeline_id: str, pipeline_exists: bool, reasons: Sequence[Reason], reason_id: str
) -> tuple[list[Reason], list[Problem]]:
    problems = _admin_problems(actor, "edit disqualification reasons") + _pipeline_problems(pipeline_id, pipeline_exists)
    if pipeline_exists and not any(r.reason_id == reason_id for r in reasons):
        problems.append(Problem("not_found", f"pipeline has no reason {reason_id!r}", "reason_id"))
    if problems:
        return list(reasons), problems
    return [r for r in reasons if r.reason_id != reason_id], []


def _admin_problems(actor: Actor, action: str) -> list[Problem]:
    problems = actor_problems(actor)
    if not problems and not actor.is_admin:
        problems.append(
            Problem("forbidden", f"only administrators may {action}; user {actor.user_id} is not one")
        )
    return problems


def _pipeline_problems(pipeline_id: str, exists: bool) -> list[Problem]:
    if exists:
        return []
    return [Problem("not_found", f"pipeline {pipeline_id} does not exist", "pipeline_id")]


def reason_of(reasons: Iterable[Reason], reason_id: str) -> Reason | None:
    return next((r for r in reasons if r.reason_id == reason_id), None)
