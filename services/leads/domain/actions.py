"""Stage-entry actions and pipeline visibility: checking what administrators configure, and who sees a pipeline."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from crmkit.visibility import sees
from services.leads.domain.model import Actor, FINAL_STATUSES, Lead, Pipeline, Rejected, Stage, StageAction, Visibility
from services.leads.domain.rules import _as_mapping, _text
from services.leads.domain.capture import FORM_ACTOR_PREFIX

# Who a set_fields action acts as: the leads service itself, applying what an administrator configured.
STAGE_ACTIONS_ACTOR = Actor(user_id="crm-stage-actions", licensed=True, service=True)

# What a set_fields action may set: plain card values (links, products and the title stay with people).
SETTABLE_FIELDS: tuple[str, ...] = (
    "responsible_id", "source", "marketing_event", "utm_source", "utm_medium", "utm_campaign", "need_maturity",
    "description",
)
NEED_MATURITIES = ("aware", "interested", "urgent")
ACTIONS_MAX = 10  # per stage: each lead entering runs them all
URL_MAX_CHARS = 2_000
SECRET_MIN_CHARS = 16
SECRET_MAX_CHARS = 200
VISIBILITY_MAX = 50  # groups plus roles on one pipeline
# Host names that name this machine or a private network, whatever they resolve to.
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --- visibility -----------------------------------------------------------------------------


def visibility_of(spec: Any) -> Visibility | None:
    """The stored visibility for a command's ``visible_to``: None (every licensed user) when it names nobody."""
    if spec is None:
        return None
    data = _as_mapping(spec)
    groups = sorted({str(g).strip() for g in data.get("groups") or () if str(g).strip()})
    roles = sorted({str(r).strip() for r in data.get("roles") or () if str(r).strip()})
    if len(groups) + len(roles) > VISIBILITY_MAX:
        raise Rejected("validation", f"a pipeline may be shown to at most {VISIBILITY_MAX} groups and roles",
                       [("visible_to", f"{len(groups) + len(roles)} groups and roles, at most {VISIBILITY_MAX}")])
    return Visibility(groups=groups, roles=roles) if groups or roles else None


def can_see(actor: Actor, pipeline: Pipeline | None) -> bool:
    """Whether ``actor`` sees ``pipeline`` and its leads (a missing pipeline hides nothing more than it shows)."""
    if pipeline is None or pipeline.visible_to is None:
        return True
    if actor.user_id.startswith(FORM_ACTOR_PREFIX):
        return True  # a capture form creates leads only, in the pipeline an administrator chose for it
    return sees(actor, pipeline.visible_to.groups, pipeline.visible_to.roles)


def restricted_for(actor: Actor, pipelines: Iterable[Pipeline]) -> bool:
    """Whether some pipeline is hidden from ``actor`` (then a lead it cannot find is answered as one it may not see)."""
    return any(not can_see(actor, p) for p in pipelines)


# --- building the actions of a stage ----------------------------------------------------------


def build_actions(
    specs: Iterable[Any] | None, kept: Stage | None, status: str, index: int, private_hosts: frozenset[str]
) -> tuple[list[StageAction], list[tuple[str, str]]]:
    """A stage's actions from its spec (``None``: the kept stage's, unchanged) and the problems found, by field path."""
    if specs is None:
        return (list(kept.on_enter) if kept else []), []
    items = [_as_mapping(spec) for spec in specs]
    where = f"stages.{index}.on_enter"
    if len(items) > ACTIONS_MAX:
        return [], [(where, f"{len(items)} actions, at most {ACTIONS_MAX}")]
    previous = {a.action_id: a for a in (kept.on_enter if kept else [])}
    actions: list[StageAction] = []
    errors: list[tuple[str, str]] = []
    taken: set[str] = set()
    for n, item in enumerate(items):
        path = f"{where}.{n}"
        kind = _text(item.get("kind"))
        action_id = str(item.get("action_id") or "").strip() or f"{kind or 'action'}-{n + 1}"
        if action_id in taken:
            errors.append((f"{path}.action_id", f"{action_id} is repeated within the stage"))
            continue
        taken.add(action_id)
        if kind == "set_fields":
            problems = _field_problems(item.get("set_fields"), status)
            errors += [(f"{path}.set_fields{suffix}", problem) for suffix, problem in problems]
            if not problems:
                actions.append(StageAction(action_id=action_id, kind=kind, set_fields=dict(item["set_fields"])))
        elif kind == "webhook":
            url = str(item.get("url") or "").strip()
            secret = item.get("secret")
            before = previous.get(action_id)
            if secret is None and before is not None and before.kind == "webhook":
                secret = before.secret  # an update that repeats the action need not repeat its secret
            if problem := webhook_url_problem(url, private_hosts):
                errors.append((f"{path}.url", problem))
            if problem := _secret_problem(secret):
                errors.append((f"{path}.secret", problem))
            if not errors:
                actions.append(StageAction(action_id=action_id, kind=kind, url=url, secret=secret))
        else:
            errors.append((f"{path}.kind", "must be set_fields or webhook"))
    return actions, errors


def _field_problems(values: Any, status: str) -> list[tuple[str, str]]:
    if status in FINAL_STATUSES:
        return [("", f"leads in a {status} stage are locked, so no field can be set there; use a webhook")]
    if not isinstance(values, Mapping) or not values:
        return [("", "name at least one field and its value")]
    problems = []
    for name, value in values.items():
        if name not in SETTABLE_FIELDS:
            problems.append((f".{name}", f"cannot be set by an action; settable: {', '.join(SETTABLE_FIELDS)}"))
        elif not str(value).strip():
            problems.append((f".{name}", "give a value (an action cannot empty a field)"))
        elif name == "need_maturity" and value not in NEED_MATURITIES:
            problems.append((f".{name}", f"must be one of {', '.join(NEED_MATURITIES)}"))
    return problems


def _secret_problem(secret: Any) -> str | None:
    if secret is None or not str(secret):
        return "a webhook needs a signing secret (the receiver checks the HMAC-SHA256 signature with it)"
    if not SECRET_MIN_CHARS <= len(str(secret)) <= SECRET_MAX_CHARS:
        return f"{len(str(secret))} characters; a secret has {SECRET_MIN_CHARS} to {SECRET_MAX_CHARS}"
    return None


def webhook_url_problem(url: str, private_hosts: frozenset[str]) -> str | None:
    """What is wrong with a webhook address, or None: http(s), a host, no credentials, no private host unless allowed."""
    if not url:
        return "a webhook needs a url"
    if len(url) > URL_MAX_CHARS:
        return f"{len(url):,} characters, at most {URL_MAX_CHARS:,}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid address ({exc})"
    if parts.scheme not in ("http", "https"):
        return "only http and https addresses are called"
    host = (parts.hostname or "").lower()
    if not host:
        return "the address names no host"
    if parts.username is not None or parts.password is not None:
        return "credentials in the address would be logged and published; sign with the secret instead"
    if is_private_host(host) and not host_allowed(host, port, private_hosts):
        return (f"{host} is a private or loopback address; an operator can allow it with "
                "LEADS_WEBHOOK_ALLOWED_PRIVATE_HOSTS")
    return None


def is_private_host(host: str) -> bool:
    """Whether a host name or address literal is this machine or a private network (by its text, no lookup)."""
    host = host.strip("[]").lower().rstrip(".")  # `localhost.` is localhost
    if host == "localhost" or host.endswith(_PRIVATE_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # fe80::1%eth0: the zone is no part of the address
    except ValueError:
        return False
    return not all(a.is_global for a in (address, *_embedded_ipv4(address)))


def _embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one reaches (mapped, 6to4, Teredo, NAT64): `64:ff9b::7f00:1` is 127.0.0.1."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


def host_allowed(host: str, port: int | None, private_hosts: frozenset[str]) -> bool:
    """Whether the operator allowed a private host (``host`` or ``host:port`` in the setting)."""
    host = host.strip("[]").lower()
    return host in private_hosts or (port is not None and f"{host}:{port}" in private_hosts)


# --- running a set_fields action ----------------------------------------------------------------


def field_action(pipeline: Pipeline, stage_id: str, action_id: str) -> StageAction:
    """The set_fields action a run-stage-action names; gone since (the stage was reconfigured): not_found."""
    stage = pipeline.stage(stage_id)
    action = next((a for a in (stage.on_enter if stage else []) if a.action_id == action_id), None)
    if action is None or action.kind != "set_fields":
        raise Rejected("not_found", f"stage {stage_id} of pipeline {pipeline.pipeline_id} has no field action {action_id} any more")
    return action


def action_changes(action: StageAction) -> dict[str, Any]:
    """The card changes a set_fields action makes, as a crm.lead.update would ask for them."""
    return dict(action.set_fields or {})


# --- what is published ----------------------------------------------------------------------


def public_pipeline(pipeline: Pipeline) -> dict[str, Any]:
    """The pipeline as events and the read side show it: each webhook's secret replaced by whether one is set."""
    data = pipeline.model_dump(mode="json")
    for stage in data["stages"]:
        for action in stage["on_enter"]:
            action["secret_set"] = bool(action.pop("secret", None))
    return data


def entered(pipeline: Pipeline | None, stage_id: str) -> list[StageAction]:
    """The actions a lead entering ``stage_id`` of ``pipeline`` runs, in order."""
    stage = pipeline.stage(stage_id) if pipeline is not None and not pipeline.deleted else None
    return list(stage.on_enter) if stage else []


def unseen_lead_message(lead_id: str) -> str:
    return (f"lead {lead_id} is not one you may see: it does not exist, or its pipeline is not shown to your groups "
            "or roles; ask an administrator")


def require_visible(actor: Actor, lead: Lead | None, lead_id: str, pipelines: Mapping[str, Pipeline]) -> None:
    """A command on a lead the actor may not see is refused ``forbidden``; so is one on a missing lead when
    some pipeline is hidden from the actor, so the answer tells nothing about which leads exist."""
    if lead is not None and can_see(actor, pipelines.get(lead.pipeline_id)):
        return
    if lead is None and not restricted_for(actor, pipelines.values()):
        return  # nothing is hidden from this actor: the rule's own not_found answers
    raise Rejected("forbidden", unseen_lead_message(lead_id))
