"""Event encoding: every tag round-trips; tags equal class names; the wire is camelCase."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import find, given
from strategies import job_events

from aura.projections.events import DECODER, ENCODER, EVENT_TYPES, Event, StepProgressed


@given(job_events())
def test_decode_of_encode_is_identity_for_generated_events(events: list[Event]) -> None:
    for event in events:
        assert DECODER.decode(ENCODER.encode(event)) == event


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_the_strategy_generates_every_event_type(event_type: type) -> None:
    # so the round trip above covers a type added later too
    found = find(job_events(), lambda events: any(type(e) is event_type for e in events))
    assert any(type(e) is event_type for e in found)


def test_wire_is_camel_case_with_the_type_tag() -> None:
    data = msgspec.json.decode(ENCODER.encode(StepProgressed(step="mux", pct=5, eta_seconds=2.0)))
    assert data == {
        "type": "StepProgressed",
        "attempt": 1,
        "step": "mux",
        "pct": 5.0,
        "message": "",
        "etaSeconds": 2.0,
    }


def test_unknown_fields_in_stored_events_are_ignored_for_forward_compatibility() -> None:
    event = DECODER.decode(b'{"type":"JobStarted","attempt":2,"addedLater":true}')
    assert event.attempt == 2


@pytest.mark.parametrize(
    "raw",
    [b'{"type":"Bogus"}', b'{"type":"StepStarted"}', b'{"type":"JobStarted","attempt":"x"}', b"{"],
)
def test_bad_payloads_raise_msgspec_errors(raw: bytes) -> None:
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
        DECODER.decode(raw)
