"""A VCSE host's status becomes a FHIR Task status only along the Task state machine."""

from __future__ import annotations

import pytest

from mappings.task_status import task_transition
from profiles.outcomes import FhirError


@pytest.mark.parametrize(
    ("status", "current", "expected"),
    [
        ("accepted", "requested", "accepted"),
        ("declined", "accepted", "rejected"),
        ("in-progress", "accepted", "in-progress"),
        ("completed", "in-progress", "completed"),
        ("on-hold", "requested", "on-hold"),
        ("on-hold", "accepted", "on-hold"),
        ("accepted", "on-hold", "accepted"),
        ("declined", "on-hold", "rejected"),
    ],
)
def test_allowed_moves(status: str, current: str, expected: str) -> None:
    assert task_transition(status, reason="no space", packet_status="new", task_status=current) == expected


def test_a_repeated_status_changes_nothing() -> None:
    assert task_transition("accepted", reason=None, packet_status="accepted", task_status="accepted") is None


@pytest.mark.parametrize(
    ("status", "reason", "packet", "current", "http"),
    [
        ("banana", None, "new", "requested", 422),
        ("declined", " ", "new", "requested", 422),
        ("accepted", None, "ceased", "requested", 409),
        ("completed", None, "new", "requested", 409),
        ("in-progress", None, "new", "on-hold", 409),
        ("completed", None, "on-hold", "on-hold", 409),
        ("on-hold", None, "in-progress", "in-progress", 409),
        ("on-hold", None, "recalled", "requested", 409),
    ],
)
def test_refused_moves(status: str, reason: str | None, packet: str, current: str, http: int) -> None:
    with pytest.raises(FhirError) as refused:
        task_transition(status, reason=reason, packet_status=packet, task_status=current)
    assert refused.value.status == http
