"""The VCSE host's view of a referral mapped onto the FHIR R4 Task state machine.

A host says accepted, declined (with a reason), on-hold, in-progress or completed; each becomes a Task
status, allowed only from the states FHIR's Task state machine lets it follow.
"""

from __future__ import annotations

from profiles.outcomes import FhirError, Issue

# VCSE status -> (FHIR Task.status, the Task states it may come from). FHIR R4 Task state machine.
# "on-hold" is the host pausing before or after accepting (e.g. until it reaches the person): FHIR's
# Task.status on-hold, which the host leaves by accepting or declining. (A Task the gateway itself put
# on hold, awaiting consent, has no packet, so no host can move it.)
TRANSITIONS: dict[str, tuple[str, frozenset[str]]] = {
    "accepted": ("accepted", frozenset({"requested", "received", "on-hold"})),
    "declined": ("rejected", frozenset({"requested", "received", "accepted", "on-hold"})),
    "on-hold": ("on-hold", frozenset({"requested", "received", "accepted"})),
    "in-progress": ("in-progress", frozenset({"accepted"})),
    "completed": ("completed", frozenset({"accepted", "in-progress"})),
}
CLOSED_PACKETS = ("recalled", "ceased")


def task_transition(status: str, *, reason: str | None, packet_status: str, task_status: str | None) -> str | None:
    """Returns the Task status `status` leads to, None when the Task is already there; raises FhirError
    422 for an unknown status or a decline without a reason, 409 for a move the state machine forbids."""
    if status not in TRANSITIONS:
        raise FhirError(422, [Issue("value", f"status must be one of {', '.join(TRANSITIONS)}", "status")])
    if status == "declined" and not (reason and reason.strip()):
        raise FhirError(422, [Issue("required", "A declined referral needs a reason", "reason")])
    if packet_status in CLOSED_PACKETS:
        raise FhirError(409, [Issue("business-rule", f"The referral was {packet_status}; it cannot change", "status")])
    target, allowed_from = TRANSITIONS[status]
    if task_status == target:
        return None
    if task_status not in allowed_from:
        raise FhirError(
            409, [Issue("business-rule", f"A referral that is {task_status} cannot become {status}", "status")]
        )
    return target


def settled_business_status(status: str, reason: str | None) -> str:
    """Returns the businessStatus text for a Task whose status changed without a business status of its
    own (a cancellation, a consent withdrawal): the old text ("accepted by ...", "awaiting consent") no
    longer holds, and businessStatus must agree with status."""
    return f"{status}: {reason}" if reason else status
