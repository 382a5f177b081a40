"""Who a storage call runs for: the caller scope every function in gateway/storage/ takes first.

A scope is either an authenticated principal (a client of one organisation, in one role) or the
gateway itself acting for exactly one tenant (`ForTenant`: a pipeline step about one practice's
referral) or, for the outbox only, the delivery worker (`DELIVERY`). There is no "gateway sees
everything" scope: a look-up that must be filtered by tenant cannot be written without naming one,
and the filter goes into the SQL statement, before any limit.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from gateway.auth.principal import Principal, Role


@dataclass(frozen=True)
class ForTenant:
    """The gateway acting on one organisation's data (e.g. deciding consent for its referral)."""

    tenant: str

    def __post_init__(self) -> None:
        if not self.tenant:
            raise ScopeRequired("ForTenant needs the organisation it acts for")


@dataclass(frozen=True)
class DeliveryWorker:
    """The delivery worker: it leases and records outbox rows of every tenant, and nothing else."""


DELIVERY = DeliveryWorker()
Scope = Principal | ForTenant | DeliveryWorker


class ScopeRequired(TypeError):
    """A storage function was called without a caller scope it accepts (a programming error)."""


P = ParamSpec("P")
R = TypeVar("R")
SCOPED_MARK = "__storage_scope__"


def scoped(*accepts: type) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Marks a storage function as taking `scope` as its second argument (after the session), of one
    of the types in `accepts`; anything else (None included) raises ScopeRequired before any SQL runs."""
    allowed = accepts or (Principal, ForTenant)

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        names = list(inspect.signature(fn).parameters)
        if names[:2] != ["session", "scope"]:
            raise TypeError(f"{fn.__qualname__}: a scoped storage function takes (session, scope, ...)")

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            scope = args[1] if len(args) > 1 else kwargs.get("scope")
            if not isinstance(scope, allowed):
                raise ScopeRequired(
                    f"{fn.__qualname__} runs only for a caller scope ({', '.join(t.__name__ for t in allowed)}), "
                    f"not {type(scope).__name__}"
                )
            return fn(*args, **kwargs)

        setattr(run, SCOPED_MARK, allowed)
        return run

    return wrap


def tenant_of(scope: Any) -> str:
    """Returns the organisation whose data a referrer (or the gateway acting for it) may touch."""
    if isinstance(scope, ForTenant):
        return scope.tenant
    if isinstance(scope, Principal) and scope.role is Role.REFERRER:
        return scope.organisation
    raise ScopeRequired(f"{type(scope).__name__} {getattr(scope, 'role', '')} has no referrer tenant")


def host_of(scope: Any) -> str:
    """Returns the VCSE host a principal acts for."""
    if isinstance(scope, Principal) and scope.role is Role.VCSE:
        return scope.organisation
    raise ScopeRequired(f"{type(scope).__name__} {getattr(scope, 'role', '')} is not a VCSE host")
