"""Event encoding: every tag round-trips; tags equal class names; the wire is camelCase."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from strategies import job_events

from aura.projections.events import (
    EVENT_TYPES,
    Event,
    StepProgressed,
    decode_event,
    encode_event,
)


@given(job_events())
def test_decode_of_encode_is_identity_for_generated_events(events: list[Event]) -> None:
    for event in events:
        assert decode_event(encode_event(event)) == event


def test_every_event_type_is_generated_by_the_strategy_or_listed_here() -> None:
    assert {t.__name__ for t in EVENT_TYPES} == {
        "JobCreated", "JobStarted", "StepStarted", "StepProgressed", "StepSucceeded",
        "StepFailed", "StepSkipped", "StepCanceled", "JobWarning", "JobCancelRequested",
        "JobCanceled", "JobRetryRequested", "JobInterrupted", "JobSucceeded", "JobFailed",
    }  # fmt: skip


def test_wire_is_camel_case_with_the_type_tag() -> None:
    data = msgspec.json.decode(encode_event(StepProgressed(step="mux", pct=5, eta_seconds=2.0)))
    assert data == {
        "type": "StepProgressed",
        "attempt": 1,
        "step": "mux",
        "pct": 5.0,
        "message": "",
        "etaSeconds": 2.0,
    }


def test_unknown_fields_in_stored_events_are_ignored_for_forward_compatibility() -> None:
    event = decode_event(b'{"type":"JobStarted","attempt":2,"addedLater":true}')
    assert event.attempt == 2


@pytest.mark.parametrize(
    "raw",
    [b'{"type":"Bogus"}', b'{"type":"StepStarted"}', b'{"type":"JobStarted","attempt":"x"}', b"{"],
)
def test_bad_payloads_raise_msgspec_errors(raw: bytes) -> None:
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
        decode_event(raw)
