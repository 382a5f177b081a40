"""Every function of the storage layer refuses to run without a caller scope it accepts, before any SQL.

The test walks the modules of gateway/storage/ (all but the FHIR repository, the search-parameter table,
the scope module itself, the race guard and the feed's numbering hook), so a function added later
without `@scoped` fails here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

import gateway.storage
from gateway.auth.principal import ROLE_SCOPES, Principal, Role
from gateway.storage.repository import Repository
from gateway.storage.scope import DELIVERY, SCOPED_MARK, ForTenant, ScopeRequired

# feed: the change feed's numbering hook (run at commit) and its cursor codec; the feed's reads are the
# scoped functions packets.listed and packets.notices.
NOT_AGGREGATES = {"feed", "guard", "repository", "searchparams", "scope"}
ADMIN = Principal("demo-admin", "QJM", Role.ADMIN, frozenset(ROLE_SCOPES[Role.ADMIN]))


class NoDatabase:
    """A session that fails the test if anything touches it: the refusal must come first."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the storage function used the session ({name}) before checking its scope")


def storage_modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.iter_modules(gateway.storage.__path__) if m.name not in NOT_AGGREGATES]
    return [importlib.import_module(f"gateway.storage.{name}") for name in sorted(names)]


def storage_functions() -> list[tuple[str, Callable[..., Any]]]:
    found = []
    for module in storage_modules():
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__ and not name.startswith("_"):
                found.append((f"{module.__name__.rsplit('.', 1)[1]}.{name}", fn))
    return found


def call(fn: Callable[..., Any], scope: Any) -> Any:
    """Calls `fn` with a session that must not be touched, `scope`, and placeholders for the rest."""
    params = list(inspect.signature(inspect.unwrap(fn)).parameters.values())[2:]
    args = [object() for p in params if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    kwargs = {p.name: object() for p in params if p.default is p.empty and p.kind is p.KEYWORD_ONLY}
    return fn(NoDatabase(), scope, *args, **kwargs)


def test_the_walk_finds_the_aggregates() -> None:
    modules = {m.__name__.rsplit(".", 1)[1] for m in storage_modules()}
    assert {"consents", "outbox", "packets", "referrals", "resources"} <= modules
    assert len(storage_functions()) >= 15


@pytest.mark.parametrize("name, fn", storage_functions(), ids=[n for n, _ in storage_functions()])
def test_each_storage_function_is_scoped_and_refuses_no_scope(name: str, fn: Callable[..., Any]) -> None:
    accepted = getattr(fn, SCOPED_MARK, None)
    assert accepted, f"{name} is not marked @scoped"

    for missing in (None, "A81001", {"tenant": "A81001"}):
        with pytest.raises(ScopeRequired):
            call(fn, missing)
    # and a scope of the wrong kind: tenant look-ups are not the worker's, the outbox lease not a tenant's
    for other in (ForTenant("A81001"), DELIVERY):
        if not isinstance(other, accepted):
            with pytest.raises(ScopeRequired):
                call(fn, other)


def test_tenant_functions_refuse_a_principal_without_a_tenant() -> None:
    """An admin or IG officer has no referrer tenant: a tenant look-up refuses it before any SQL."""
    from gateway.storage import consents, referrals, resources

    for fn in (consents.of_patient, resources.patient, referrals.of_patient):
        with pytest.raises(ScopeRequired):
            fn(NoDatabase(), ADMIN, "9990001006")


def test_the_repository_has_no_gateway_wide_look_up_by_value() -> None:
    with pytest.raises(ScopeRequired):
        Repository(NoDatabase(), None).find_by_token(  # type: ignore[arg-type]
            "Consent", "patient:identifier", "https://fhir.nhs.uk/Id/nhs-number", "9990001006"
        )
