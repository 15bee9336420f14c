"""The event types of the job log: a closed, tagged union of frozen msgspec Structs.

Every event is a past-tense fact about one job. The store wraps it in a `Recorded` envelope that
holds its log position (`seq`, `version`) and the time it was appended (`ts`); the event itself
holds only facts. Tags are the type names docs/architecture.md lists under "Events", and are never
reused or renamed: stored rows are decoded by them.

Evolution: new fields get defaults; a type or a tag never changes. Stored events are decoded
without `forbid_unknown_fields`, so a rolled-back build can still read a newer log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

__all__ = [
    "DECODER",
    "ENCODER",
    "EVENT_TYPES",
    "Artifact",
    "ErrorInfo",
    "Event",
    "JobCancelRequested",
    "JobCanceled",
    "JobCreated",
    "JobFailed",
    "JobInterrupted",
    "JobRetryRequested",
    "JobStarted",
    "JobSucceeded",
    "JobWarning",
    "Output",
    "OutputsPruned",
    "Recorded",
    "StepCanceled",
    "StepFailed",
    "StepProgressed",
    "StepSkipped",
    "StepStarted",
    "StepSucceeded",
]


# Events and payloads are frozen values that never refer back to what holds them, so they
# cannot be part of a reference cycle: `gc=False` keeps them out of the garbage collector's
# lists (a live server holds thousands, and each collection would walk them).


class Payload(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """A value carried inside an event (camelCase on the wire)."""


class ErrorInfo(Payload, frozen=True, kw_only=True):
    """A failure as the user sees it: a taxonomy code, what happened and what to do.

    `attempt`: the job's attempt that failed (1, then +1 per retry). A job's `errors` always
    carry it; it is null only in an event logged before errors carried it (the job's `errors`
    then take the event's own attempt).
    """

    code: str
    message: str
    remediation: str
    details: dict[str, Any] = {}
    correlation_id: str = ""
    step: str | None = None
    attempt: int | None = None


class Artifact(Payload, frozen=True, kw_only=True):
    """A file a step produced, with what retry needs to verify it is unchanged."""

    name: str
    path: str
    size_bytes: int
    sha256: str


class Output(Payload, frozen=True, kw_only=True):
    """The finished video."""

    video_path: str
    size_bytes: int
    duration_seconds: float
    sha256: str


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", rename="camel", gc=False):
    """Base of every event. `attempt` is 1 for the first run and grows by one per retry."""

    attempt: int = 1

    @property
    def step_name(self) -> str | None:
        """The step this event is about, or None for a job-level event."""
        return None


class StepEvent(Event, frozen=True, kw_only=True):
    """An event about one step of the pipeline."""

    step: str

    @property
    def step_name(self) -> str | None:
        return self.step


class JobCreated(Event, tag="JobCreated", frozen=True, kw_only=True):
    preset: str
    brief: dict[str, Any] = {}
    options: dict[str, Any] = {}
    steps: tuple[str, ...]
    correlation_id: str
    idempotency_key: str | None = None
    rerun_of: str | None = None


class JobStarted(Event, tag="JobStarted", frozen=True, kw_only=True):
    pass


class StepStarted(StepEvent, tag="StepStarted", frozen=True, kw_only=True):
    pass


class StepProgressed(StepEvent, tag="StepProgressed", frozen=True, kw_only=True):
    pct: float
    message: str = ""
    eta_seconds: float | None = None


class StepSucceeded(StepEvent, tag="StepSucceeded", frozen=True, kw_only=True):
    artifacts: tuple[Artifact, ...] = ()
    duration_seconds: float = 0.0


class StepFailed(StepEvent, tag="StepFailed", frozen=True, kw_only=True):
    error: ErrorInfo


class StepSkipped(StepEvent, tag="StepSkipped", frozen=True, kw_only=True):
    reason: str
    reused_from_attempt: int | None = None


class StepCanceled(StepEvent, tag="StepCanceled", frozen=True, kw_only=True):
    pass


class JobWarning(Event, tag="JobWarning", frozen=True, kw_only=True):
    code: str
    message: str
    step: str | None = None

    @property
    def step_name(self) -> str | None:
        return self.step


class JobCancelRequested(Event, tag="JobCancelRequested", frozen=True, kw_only=True):
    reason: str = ""


class JobCanceled(Event, tag="JobCanceled", frozen=True, kw_only=True):
    pass


class JobRetryRequested(Event, tag="JobRetryRequested", frozen=True, kw_only=True):
    """A new attempt of the same job; `attempt` is the new attempt's number."""

    from_step: str | None = None


class JobInterrupted(Event, tag="JobInterrupted", frozen=True, kw_only=True):
    """The job was found running after a restart; `step` is the step that was interrupted."""

    step: str | None = None

    @property
    def step_name(self) -> str | None:
        return self.step


class JobSucceeded(Event, tag="JobSucceeded", frozen=True, kw_only=True):
    output: Output


class JobFailed(Event, tag="JobFailed", frozen=True, kw_only=True):
    error: ErrorInfo


class OutputsPruned(Event, tag="OutputsPruned", frozen=True, kw_only=True):
    """The ended job's folder (its artifacts and output) was deleted by
    `aura compact --prune-outputs`: `files` files of `size_bytes` bytes in all."""

    files: int = 0
    size_bytes: int = 0


AnyEvent = (
    JobCreated
    | JobStarted
    | StepStarted
    | StepProgressed
    | StepSucceeded
    | StepFailed
    | StepSkipped
    | StepCanceled
    | JobWarning
    | JobCancelRequested
    | JobCanceled
    | JobRetryRequested
    | JobInterrupted
    | JobSucceeded
    | JobFailed
    | OutputsPruned
)

EVENT_TYPES: tuple[type[Event], ...] = AnyEvent.__args__


class Recorded(msgspec.Struct, frozen=True, gc=False):
    """An event as stored: its global position, its job, its version in the job, its time."""

    seq: int
    job_id: str
    version: int
    ts: datetime
    event: AnyEvent

    @property
    def type(self) -> str:
        return type(self.event).__name__


#: an event as JSON (with its `type` tag), as stored in the log's `data` column
ENCODER = msgspec.json.Encoder()
#: decodes one stored event; raises msgspec.ValidationError/DecodeError on bad input
DECODER: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def _check_tags() -> None:
    # A class's tag must equal its name: the store writes `type(event).__name__` in the
    # `type` column and decoders dispatch on the tag, so the two may never drift apart.
    for cls in EVENT_TYPES:
        tag = cls.__struct_config__.tag
        if tag != cls.__name__:
            raise TypeError(f"{cls.__name__} has tag {tag!r}")


_check_tags()
