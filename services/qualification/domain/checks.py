"""Every reason a qualification or disqualification may not go ahead."""

from __future__ import annotations

from collections.abc import Sequence

from services.qualification.domain.model import FINAL_STATUSES, Actor, Closing, Lead, Problem, QualifyRequest, Reason


def reopened_since(lead: Lead, closing: Closing) -> bool:
    """Whether the lead was closed by this process (or later) and then reopened by an administrator.

    Only then may it be closed again: a lead whose closing the leads service has not applied yet
    still looks open here, so being open alone proves nothing."""
    return (
        lead.status not in FINAL_STATUSES
        and lead.closed_version is not None
        and lead.closed_version >= closing.lead_version
        and lead.version > lead.closed_version
    )


# --- checks -----------------------------------------------------------------------------------


def _lead_problems(lead_id: str, lead: Lead | None, closing: Closing | None, command_id: str) -> list[Problem]:
    if lead is None:
        return [Problem("not_found", f"lead {lead_id} is not known to the qualification service", "lead_id")]
    problems: list[Problem] = []
    if lead.deleted:
        problems.append(Problem("invalid_state", f"lead {lead_id} is deleted; restore it first with crm.lead.restore", "lead_id"))
    if lead.status in FINAL_STATUSES:
        problems.append(Problem("invalid_state", f"lead {lead_id} is already {lead.status} and locked", "lead_id"))
    elif closing is not None and closing.command_id != command_id and not reopened_since(lead, closing):
        # The leads service has not told us yet, but this service already closed (or is closing) it.
        if closing.state != "done":
            problems.append(
                Problem("conflict", f"lead {lead_id} is being qualified by command {closing.command_id}", "lead_id")
            )
        else:
            done = "qualified" if closing.kind == "qualify" else "unqualified"
            problems.append(Problem("invalid_state", f"lead {lead_id} is already {done} and locked", "lead_id"))
    return problems


def actor_problems(actor: Actor) -> list[Problem]:
    if actor.licensed:
        return []
    return [
        Problem(
            "not_licensed",
            f"user {actor.user_id or '(none)'} holds no CRM licence; ask an administrator to grant one, "
            "then send the command again",
        )
    ]


def check_qualification(
    request: QualifyRequest,
    lead: Lead | None,
    actor: Actor,
    closing: Closing | None,
    command_id: str,
    deal_pipelines: Sequence[str],
    company_known: bool | None,
) -> list[Problem]:
    """Every reason the qualification may not go ahead; empty when it may.

    ``company_known`` says whether ``request.company_id`` names a known company (None when not asked).
    """
    problems = _lead_problems(request.lead_id, lead, closing, command_id)
    problems += actor_problems(actor)
    if request.company_id and request.has_new_company:
        problems.append(Problem("validation", "give either company_id or new_company, not both", "company_id"))
    elif not request.company_id and not request.has_new_company:
        problems.append(
            Problem("validation", "name an existing company with company_id or describe one in new_company", "company_id")
        )
    elif request.company_id and company_known is False:
        problems.append(Problem("not_found", f"company {request.company_id} is not known", "company_id"))
    if request.has_new_company and not (request.new_company_name or "").strip():
        problems.append(Problem("validation", "new_company needs a name", "new_company.name"))
    if request.qualification_type == "deal_and_company":
        if not request.deal_pipeline_id:
            problems.append(
                Problem("validation", "deal_and_company needs deal_pipeline_id, the deal pipeline of the new deal", "deal_pipeline_id")
            )
        elif request.deal_pipeline_id not in deal_pipelines:
            problems.append(
                Problem(
                    "validation",
                    f"unknown deal pipeline {request.deal_pipeline_id!r}; valid: {', '.join(deal_pipelines)}",
                    "deal_pipeline_id",
                )
            )
    return problems


def check_disqualification(
    lead_id: str,
    reason_id: str,
    lead: Lead | None,
    actor: Actor,
    closing: Closing | None,
    command_id: str,
    reasons: Sequence[Reason],
) -> list[Problem]:
    problems = _lead_problems(lead_id, lead, closing, command_id)
    problems += actor_problems(actor)
    if lead is not None and not any(r.reason_id == reason_id for r in reasons):
        valid = ", ".join(r.reason_id for r in reasons) or "(none)"
        problems.append(
            Problem(
                "validation",
                f"{reason_id!r} is not a disqualification reason of pipeline {lead.pipeline_id}; use one of: {valid} "
                "(free text goes in comment)",
                "reason_id",
            )
        )
    return problems
