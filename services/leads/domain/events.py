"""What the rules return: the new state with the domain events it produced."""

from __future__ import annotations

from dataclasses import dataclass, field


from services.leads.domain.model import DuplicateMatch, Lead, Pipeline


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadCreated:
    lead: Lead


@dataclass(frozen=True)
class LeadUpdated:
    lead: Lead
    changed_fields: tuple[str, ...]


@dataclass(frozen=True)
class LeadAssigned:
    lead_id: str
    responsible_id: str
    previous_responsible_id: str | None
    version: int


@dataclass(frozen=True)
class StageChanged:
    lead_id: str
    pipeline_id: str
    from_stage_id: str
    to_stage_id: str
    from_status: str
    to_status: str
    version: int
    from_pipeline_id: str | None = None  # set only when the lead changed pipeline


@dataclass(frozen=True)
class LeadDeleted:
    lead_id: str
    version: int


@dataclass(frozen=True)
class LeadRestored:
    lead_id: str
    version: int


@dataclass(frozen=True)
class DuplicatesFound:
    lead_id: str
    matches: tuple[DuplicateMatch, ...]
    version: int


@dataclass(frozen=True)
class LeadMerged:
    lead_id: str
    merged_lead_id: str
    version: int


@dataclass(frozen=True)
class PipelineCreated:
    pipeline: Pipeline


@dataclass(frozen=True)
class PipelineUpdated:
    pipeline: Pipeline


@dataclass(frozen=True)
class PipelineDeleted:
    pipeline_id: str
    version: int


@dataclass
class Outcome:
    """A lead after a command and the events to publish; no events means nothing changed."""

    lead: Lead
    events: list = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.events)


@dataclass
class PipelineOutcome:
    """A pipeline after a command and the events to publish; no events means nothing changed."""

    pipeline: Pipeline
    events: list = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.events)
