"""Console roles and the navigation each one sees. Adding a role or a page starts here (docs/console.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ConsoleRole(StrEnum):
    IG_OFFICER = "ig-officer"  # answers "who received what about this patient", checks the audit log
    ADMIN = "admin"  # the ICB's gateway administrator
    VCSE_STAFF = "vcse-staff"  # works at one VCSE host: sees that host's referrals only


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str  # under /console
    roles: frozenset[ConsoleRole]


# The header navigation, in order. A page's route must also require the same roles (pages/*.py):
# the menu only hides links, the route dependency is what refuses.
NAVIGATION: list[NavItem] = []


def register_nav(label: str, path: str, *roles: ConsoleRole) -> None:
    """Adds a header link shown to the given roles (called by a page module when it is imported)."""
    NAVIGATION.append(NavItem(label, path, frozenset(roles)))


def nav_for(role: str) -> list[NavItem]:
    return [item for item in NAVIGATION if role in item.roles]


# Where a role lands after signing in.
HOME: dict[ConsoleRole, str] = {
    ConsoleRole.IG_OFFICER: "/console/",
    ConsoleRole.ADMIN: "/console/",
    ConsoleRole.VCSE_STAFF: "/console/inbox",
}
