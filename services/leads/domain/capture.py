"""Web-to-lead capture forms and their submissions: what a form may be, and what a submission becomes."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict

from services.leads.domain.model import DEFAULT_PIPELINE_ID, FINAL_STATUSES, Actor, Pipeline, Rejected
from services.leads.domain.rules import require_admin

# A submission is a crm.lead.create sent on the form's behalf: its actor is this prefix + the form id.
# The leads service admits such an actor while the form exists (services/leads/capture/principals.py),
# and for crm.lead.create only.
FORM_ACTOR_PREFIX = "capture-form:"

# The lead fields a form may let a submission set, as dotted paths (an HTML input's `name`).
SUBMISSION_FIELDS = frozenset({
    "title", "contact.name", "contact.email", "contact.phone", "company.name", "company.inn",
    "description", "need_maturity", "marketing_event",
})
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign")
# Accepted from every submission whatever the form allows: UTM tags (hidden inputs) and the retry key.
ALWAYS_ACCEPTED = frozenset({*UTM_FIELDS, "submission_id"})
KEY_FIELD = "_key"
PRESET_FIELDS = frozenset({
    "title", "responsible_id", "source", "marketing_event", "need_maturity", "description", *UTM_FIELDS,
})
DEFAULT_RATE_PER_MINUTE = 10
DEFAULT_HONEYPOT = "_hp"
NEED_MATURITIES = ("aware", "interested", "urgent")
SETTINGS = (
    "name", "pipeline_id", "stage_id", "presets", "allowed_fields", "allowed_origins", "secret_key",
    "rate_limit_per_minute", "honeypot_field", "redirect_url",
)
CLEARABLE = frozenset({"stage_id", "presets", "allowed_fields", "allowed_origins", "secret_key", "redirect_url"})
KEY_MIN_CHARS = 16
# How a form's key is kept: a one-way function of it (services/leads/capture/keys.py `seal`), given by the caller.
Seal = Callable[[str], str]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")


class CaptureForm(BaseModel):
    """A form as the leads service keeps it: its key only as a salted hash (never the key, never published)."""

    model_config = ConfigDict(frozen=True)

    form_id: str
    name: str
    pipeline_id: str
    stage_id: str | None = None
    presets: dict[str, str] = {}
    allowed_fields: list[str] = []
    allowed_origins: list[str] = []
    secret_key_hash: str | None = None
    rate_limit_per_minute: int = DEFAULT_RATE_PER_MINUTE
    honeypot_field: str = DEFAULT_HONEYPOT
    redirect_url: str | None = None
    created_by: str
    version: int = 1
    deleted: bool = False
    updated_at: AwareDatetime

    @property
    def actor_id(self) -> str:
        return FORM_ACTOR_PREFIX + self.form_id


@dataclass(frozen=True)
class FormOutcome:
    """A form command's result: the form as it now is, and what happened (`created`, `updated`, `deleted`)."""

    form: CaptureForm
    happened: str


# --- administering forms --------------------------------------------------------------------


def create_form(
    actor: Actor, form_id: str, settings: Mapping[str, Any], pipelines: Mapping[str, Pipeline], now: datetime,
    existing: CaptureForm | None, seal: Seal,
) -> FormOutcome:
    require_admin(actor, "define capture forms")
    if existing is not None and not existing.deleted:
        raise Rejected("conflict", f"capture form {form_id} exists; change it with crm.capture-form.update", [("form_id", "exists")])
    values = {k: v for k, v in settings.items() if k in SETTINGS and v is not None}
    key = values.pop("secret_key", None)
    values.setdefault("pipeline_id", DEFAULT_PIPELINE_ID)
    form = _checked(CaptureForm(
        form_id=form_id, created_by=actor.user_id, version=(existing.version + 1) if existing else 1, updated_at=now,
        **values,
    ), pipelines, key, seal)
    return FormOutcome(form, "created")


def update_form(
    actor: Actor, form: CaptureForm | None, form_id: str, changes: Mapping[str, Any], clear: list[str],
    pipelines: Mapping[str, Pipeline], now: datetime, seal: Seal,
) -> FormOutcome:
    require_admin(actor, "change capture forms")
    form = require_form(form_id, form)
    unknown = [name for name in clear if name not in CLEARABLE]
    if unknown:
        raise Rejected("validation", f"cannot clear {', '.join(unknown)}; clearable: {', '.join(sorted(CLEARABLE))}",
                       [("clear", f"{name} cannot be cleared") for name in unknown])
    values = form.model_dump()
    values.update({k: v for k, v in changes.items() if k in SETTINGS and v is not None})
    key = values.pop("secret_key", None)
    for name in clear:
        if name == "secret_key":  # clearing wins over a key sent with it, as for every other setting
            values["secret_key_hash"], key = None, None
        else:
            values[name] = [] if name in ("allowed_fields", "allowed_origins") else ({} if name == "presets" else None)
    if "pipeline_id" in changes and changes["pipeline_id"] != form.pipeline_id and "stage_id" not in changes:
        values["stage_id"] = None  # a stage belongs to its pipeline: the new one's first stage
    values.update(version=form.version + 1, updated_at=now)
    return FormOutcome(_checked(CaptureForm(**values), pipelines, key, seal), "updated")


def delete_form(actor: Actor, form: CaptureForm | None, form_id: str, now: datetime) -> FormOutcome:
    require_admin(actor, "delete capture forms")
    form = require_form(form_id, form)
    return FormOutcome(form.model_copy(update={"deleted": True, "version": form.version + 1, "updated_at": now}), "deleted")


def require_form(form_id: str, form: CaptureForm | None) -> CaptureForm:
    if form is None or form.deleted:
        raise Rejected("not_found", f"capture form {form_id} does not exist", [("form_id", "no such form")])
    return form


def _checked(form: CaptureForm, pipelines: Mapping[str, Pipeline], key: str | None, seal: Seal) -> CaptureForm:
    """The form if its settings hold together, with ``key`` (a new key, as the administrator sent it) sealed."""
    errors: list[tuple[str, str]] = []
    pipeline = pipelines.get(form.pipeline_id)
    if pipeline is None or pipeline.deleted:
        errors.append(("pipeline_id", f"no pipeline {form.pipeline_id}"))
    elif form.stage_id is not None:
        stage = pipeline.stage(form.stage_id)
        if stage is None or stage.status in FINAL_STATUSES:
            errors.append(("stage_id", f"{form.stage_id} is not an open stage of pipeline {form.pipeline_id}"))
    errors += [(f"presets.{k}", "not a preset (allowed: " + ", ".join(sorted(PRESET_FIELDS)) + ")")
               for k in form.presets if k not in PRESET_FIELDS]
    if form.presets.get("need_maturity") not in (None, *NEED_MATURITIES):
        errors.append(("presets.need_maturity", f"must be one of {', '.join(NEED_MATURITIES)}"))
    errors += [("allowed_fields", f"{name} is not a submission field (allowed: {', '.join(sorted(SUBMISSION_FIELDS))})")
               for name in form.allowed_fields if name not in SUBMISSION_FIELDS]
    errors += [("allowed_origins", f"{origin!r} is not an origin like https://example.com (no path)")
               for origin in form.allowed_origins if not _ORIGIN.match(origin)]
    if key is None and not form.secret_key_hash and not form.allowed_origins:
        errors.append(("secret_key", "a form needs a secret key or allowed origins (or both)"))
    if key is not None and len(key) < KEY_MIN_CHARS:
        errors.append(("secret_key", f"at least {KEY_MIN_CHARS} characters"))
    if form.honeypot_field in SUBMISSION_FIELDS | ALWAYS_ACCEPTED or not form.honeypot_field.strip():
        errors.append(("honeypot_field", "must be a name of its own, not a lead field"))
    if form.redirect_url is not None and urlsplit(form.redirect_url).scheme not in ("http", "https"):
        errors.append(("redirect_url", "must be an http(s) URL"))
    if errors:
        raise Rejected("validation", "; ".join(f"{f}: {m}" for f, m in errors[:5]), errors)
    return form if key is None else form.model_copy(update={"secret_key_hash": seal(key)})


# --- submissions ----------------------------------------------------------------------------


class SubmissionError(Exception):
    """A submission the form refuses: the field named, and why (answered 400)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Submission:
    """What a submission asks for, once read: its fields (dotted names), and whether it is spam."""

    fields: dict[str, str]
    spam: bool
    key: str | None = None  # `_key` as a field, checked against the form's key
    control: dict[str, str] = field(default_factory=dict)


def flatten(body: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A JSON object's or a form's values by dotted name (`{"contact": {"email": ..}}` and `contact.email` alike)."""
    out: dict[str, str] = {}
    for key, value in body.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list):
            raise SubmissionError(name, "send one value, not a list")
        elif value is None:
            continue
        elif isinstance(value, bool | int | float | str):
            out[name] = str(value)
        else:
            raise SubmissionError(name, "must be a text value")
    return out


def read_submission(form: CaptureForm, values: Mapping[str, str]) -> Submission:
    """Sort a submission's values into lead fields, the honeypot and the key; refuse fields the form does not take."""
    accepted = set(form.allowed_fields) | ALWAYS_ACCEPTED
    fields: dict[str, str] = {}
    spam = False
    key = None
    for name, value in values.items():
        if name == form.honeypot_field:
            spam = spam or bool(value.strip())
        elif name == KEY_FIELD:
            key = value
        elif name in accepted:
            text = " ".join(value.split())
            if text:
                fields[name] = text
        else:
            raise SubmissionError(name, f"this form does not accept the field; it takes {', '.join(sorted(accepted))}")
    return Submission(fields, spam, key)


def lead_fields(form: CaptureForm, submission: Submission, query_utm: Mapping[str, str]) -> dict[str, Any]:
    """The crm.lead.create data of a submission: the form's presets, then the query's UTM, then what was sent."""
    values = dict(form.presets)
    values.update({k: v for k, v in query_utm.items() if k in UTM_FIELDS and v.strip()})
    for name, value in submission.fields.items():
        if name != "submission_id":
            values[name] = value
    email = values.get("contact.email")
    if email is not None:
        if not _EMAIL.match(email):
            raise SubmissionError("contact.email", "is not an email address")
        values["contact.email"] = email.lower()
    phone = values.get("contact.phone")
    if phone is not None and not 5 <= sum(c.isdigit() for c in phone) <= 20:
        raise SubmissionError("contact.phone", "is not a phone number (5 to 20 digits)")
    if values.get("need_maturity") not in (None, *NEED_MATURITIES):
        raise SubmissionError("need_maturity", f"must be one of {', '.join(NEED_MATURITIES)}")
    data: dict[str, Any] = {"pipeline_id": form.pipeline_id, "stage_id": form.stage_id}
    for name, value in values.items():
        head, _, tail = name.partition(".")
        if tail:
            data.setdefault(head, {})[tail] = value
        else:
            data[name] = value
    data["responsible_id"] = values.get("responsible_id") or form.created_by
    if not data.get("title"):
        who = values.get("contact.name") or values.get("contact.email") or values.get("contact.phone")
        data["title"] = f"{form.name}: {who}" if who else form.name
    return {k: v for k, v in data.items() if v is not None}


def submission_key(form_id: str, submission: Submission, window: int, client: str) -> str:
    """What identifies a submission for retries: the client's submission id, else its normalised body from one address in a time window.

    A client that sends `submission_id` (or an `Idempotency-Key` header, put into the fields by the
    caller) gets exactly one lead per id, whenever it retries. Without one, the same fields sent
    again from the same address within the window (the current or the previous one, see the capture
    endpoint) make one lead. The address is part of the key so that someone guessing a visitor's
    fields from elsewhere gets a lead id of their own, never learning whether the visitor sent them.
    """
    given = submission.fields.get("submission_id")
    if given:
        return f"{form_id}\x1fid\x1f{given}"
    normal = {k: v.casefold() for k, v in submission.fields.items()}
    digest = hashlib.sha256(json.dumps(normal, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return f"{form_id}\x1fbody\x1f{digest}\x1f{client}\x1f{window}"


def origin_allowed(form: CaptureForm, origin: str | None) -> bool:
    return origin is not None and origin.rstrip("/").lower() in {o.rstrip("/").lower() for o in form.allowed_origins}
