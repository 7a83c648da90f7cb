"""The public contract of the leads platform: topics, the CloudEvents envelope and every message type."""

from types import ModuleType as _ModuleType

from contracts.activity import (
    AddTaskType,
    CancelTask,
    CompleteTask,
    CreateTask,
    LeadActivitySummary,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskDueSoon,
    TaskOverdue,
    TaskUpdated,
    TaskView,
    UpdateTask,
)
from contracts.base import ContractModel, Payload
from contracts.cards import LeadCard, LeadFields, PipelineCard
from contracts.common import (
    DEFAULT_PIPELINE_ID,
    ActivityState,
    ActivitySummaryView,
    CallOutcome,
    CompanyRef,
    ContactRef,
    DuplicateMatch,
    FieldError,
    LeadStatus,
    MergeSide,
    NeedMaturity,
    ProductKind,
    ProductLine,
    QualificationType,
    ReasonCode,
    Stage,
    StageSpec,
    StatusHistoryEntry,
    TaskPriority,
    TaskStatus,
    TransitionMode,
    default_stage_specs,
)
from contracts.directory import (
    CompanyUpserted,
    ContactUpserted,
    ProductUpserted,
    UserLicenceGranted,
    UserLicenceRevoked,
    UserRoleGranted,
    UserRoleRevoked,
)
from contracts.envelope import Envelope
from contracts.imports import (
    CancelImport,
    ImportCompleted,
    ImportFailed,
    ImportFormat,
    ImportProgress,
    ImportReverted,
    ImportRowRejected,
    ImportStarted,
    RevertImport,
    StartImport,
)
from contracts.leads import (
    AssignLead,
    ChangeLeadPipeline,
    CreateLead,
    CreatePipeline,
    DeleteLead,
    DeletePipeline,
    DismissLeadDuplicate,
    LeadAssigned,
    LeadCreated,
    LeadDeleted,
    LeadDuplicatesFound,
    LeadMerged,
    LeadRestored,
    LeadStageChanged,
    LeadUpdated,
    MarkLeadDuplicate,
    MergeLeads,
    MoveLead,
    PipelineCreated,
    PipelineDeleted,
    PipelineUpdated,
    ReopenLead,
    RestoreLead,
    UpdateLead,
    UpdatePipeline,
)
from contracts.qualification import (
    AddDisqualificationReason,
    CompanyCreated,
    DealCreated,
    DisqualifyLead,
    LeadDisqualified,
    LeadQualified,
    NewCompany,
    QualificationRejected,
    QualifyLead,
    RejectionReason,
    RemoveDisqualificationReason,
)
from contracts.registry import (
    PAYLOADS,
    TOPIC_PAYLOADS,
    TOPIC_TYPES,
    TYPE_TOPICS,
    ContractError,
    build_message,
    envelope_class,
    parse_message,
    payload_class,
    topic_adapter,
    topics_for,
)
from contracts.rejections import CommandRejected
from contracts.topics import (
    ACTIVITY_COMMANDS,
    ACTIVITY_EVENTS,
    ALL_TOPICS,
    DIRECTORY_EVENTS,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_TOPIC,
    IMPORTS_COMMANDS,
    IMPORTS_EVENTS,
    LEADS_COMMANDS,
    LEADS_EVENTS,
    QUALIFICATION_COMMANDS,
    QUALIFICATION_EVENTS,
    dlq_topic,
)

# Submodules land in this namespace as a side effect of the imports above; they are not API.
__all__ = sorted(
    name for name, value in globals().items() if not name.startswith("_") and not isinstance(value, _ModuleType)
)
