"""The calling client as every handler sees it, and the SMART v2 scope rules.

Scopes follow SMART App Launch v2 `system/<Resource>.<cruds>` (c create, r read, u update,
d delete, s search). A role is a ceiling: a token carries at most its role's scopes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    REFERRER = "referrer"
    VCSE = "vcse"
    IG_OFFICER = "ig-officer"
    ADMIN = "admin"


ROLE_SCOPES: dict[Role, tuple[str, ...]] = {
    Role.REFERRER: (
        "system/ServiceRequest.cruds",
        "system/Patient.rs",
        "system/Task.rs",
        "system/Observation.rs",
        "system/Consent.cruds",
        # What a referral message carries beside the ServiceRequest (mappings.referral_records.REFERENCED_TYPES),
        # stored in the referrer's own tenant.
        "system/PractitionerRole.rs",
        "system/Practitioner.rs",
        "system/Organization.rs",
        "system/QuestionnaireResponse.rs",
        "system/Condition.rs",
        "system/Encounter.rs",
        "system/CarePlan.rs",
        "system/HealthcareService.rs",
        "system/Location.rs",
        "system/Flag.rs",
    ),
    Role.VCSE: ("system/Task.rsu", "system/Observation.c"),
    Role.IG_OFFICER: ("system/AuditEvent.rs", "system/Consent.rs"),
    Role.ADMIN: ("system/Organization.cruds", "system/Client.cruds"),
}


def parse_scope(scope: str) -> tuple[str, set[str]] | None:
    """Returns (resource, permissions) for `system/Res.cruds`, or None when it is not a SMART v2 system scope."""
    if not scope.startswith("system/") or "." not in scope:
        return None
    resource, _, perms = scope[len("system/") :].partition(".")
    if perms == "*":  # SMART v1 spelling, same as cruds
        perms = "cruds"
    if not resource or not perms or set(perms) - set("cruds"):
        return None
    return resource, set(perms)


def scope_allows(scopes: frozenset[str], resource: str, permission: str) -> bool:
    """Returns True when any granted scope covers this resource type and permission letter."""
    for scope in scopes:
        parsed = parse_scope(scope)
        if parsed and parsed[0] in (resource, "*") and permission in parsed[1]:
            return True
    return False


# Read scopes an IG officer may also be registered with where the deployment lets IG officers read
# clinical payloads (SPGW_IG_READS_CLINICAL=true); the repository checks the same setting.
IG_CLINICAL_SCOPES: tuple[str, ...] = (
    "system/ServiceRequest.rs",
    "system/Patient.rs",
    "system/Task.rs",
    "system/Observation.rs",
)


def role_ceiling(role: Role, *, ig_reads_clinical: bool = False) -> frozenset[str]:
    """Returns the most a client of this role may be granted."""
    extra = IG_CLINICAL_SCOPES if role is Role.IG_OFFICER and ig_reads_clinical else ()
    return frozenset((*ROLE_SCOPES[role], *extra))


def within_ceiling(role: Role, requested: set[str], *, ig_reads_clinical: bool = False) -> set[str]:
    """Returns the requested scopes that the role's ceiling covers (narrower scopes are fine)."""
    ceiling = role_ceiling(role, ig_reads_clinical=ig_reads_clinical)
    granted = set()
    for scope in requested:
        parsed = parse_scope(scope)
        if parsed and parsed[0] != "*" and all(scope_allows(ceiling, parsed[0], p) for p in parsed[1]):
            granted.add(scope)
    return granted


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: one client, one organisation, one role, the scopes of its token."""

    client_id: str
    organisation: str
    role: Role
    scopes: frozenset[str] = field(default_factory=frozenset)
    user: str | None = None  # an end user named by the caller (NHSD-End-User / header), if any

    def may(self, resource: str, permission: str) -> bool:
        return scope_allows(self.scopes, resource, permission)
