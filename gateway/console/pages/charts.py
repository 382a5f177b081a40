"""Charts for IG officers: disclosures per recipient per month and consents given or withdrawn per month,
as server-rendered SVG (gateway/console/charts.py) with the same numbers in a table beside each chart.
Counts only: no patient appears on this page. Months are UK calendar months.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session
from starlette.responses import Response

from audit.stats import disclosures_per_recipient_month
from gateway.auth.principal import ROLE_SCOPES, Principal, Role
from gateway.console.charts import Series, bar_chart
from gateway.console.plain import UK
from gateway.console.roles import ConsoleRole, register_nav
from gateway.console.web import CONSOLE_CLIENT, Viewer, render, require, state
from gateway.organisations import list_organisations
from gateway.storage.consent_history import GIVEN, WITHDRAWN, consents_per_month

router = APIRouter(include_in_schema=False)
register_nav("Charts", "/console/charts", ConsoleRole.IG_OFFICER)
IG = Depends(require(ConsoleRole.IG_OFFICER))
MONTHS_SHOWN = 12


def month_of(moment: datetime) -> str:
    """The UK calendar month of an instant, as YYYY-MM (a naive instant is UTC, as the gateway stores them)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UK).strftime("%Y-%m")


def last_months(now: datetime, count: int = MONTHS_SHOWN) -> list[str]:
    """The `count` UK months ending with the one `now` is in, oldest first, as YYYY-MM."""
    local = now.astimezone(UK)
    year, month = local.year, local.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


def month_label(key: str) -> str:
    return datetime.strptime(key + "-01", "%Y-%m-%d").strftime("%b %Y")


def _table(months: list[str], columns: list[str], counts: Counter[tuple[str, str]]) -> list[list[str | int]]:
    return [[month_label(m), *(counts[(m, c)] for c in columns)] for m in months]


def ig_principal(viewer: Viewer) -> Principal:
    """The signed-in IG officer as the storage layer's caller scope."""
    return Principal(
        CONSOLE_CLIENT,
        viewer.user.organisation_id,
        Role.IG_OFFICER,
        frozenset(ROLE_SCOPES[Role.IG_OFFICER]),
        viewer.user.username,
    )


@router.get("/console/charts")
def charts_page(request: Request, viewer: Viewer = IG) -> Response:
    with Session(state(request).engine) as session:
        names = {org.id: org.name for org in list_organisations(session)}
        disclosures = disclosures_per_recipient_month(session, month_of)
        consents = consents_per_month(session, ig_principal(viewer), month_of)
    months = last_months(datetime.now(UTC))
    labels = [month_label(m) for m in months]
    recipients = sorted({r for m, r in disclosures if m in months}, key=lambda r: names.get(r, r).lower())
    disclosure_series = [Series(names.get(r, r), [disclosures[(m, r)] for m in months]) for r in recipients]
    consent_series = [
        Series("Consents given", [consents[(m, GIVEN)] for m in months]),
        Series("Consents withdrawn", [consents[(m, WITHDRAWN)] for m in months]),
    ]
    first, last = labels[0], labels[-1]
    disclosure_chart = bar_chart(
        "disclosures-chart",
        "Disclosures per recipient per month",
        f"Bar chart of referral packets disclosed to each organisation, {first} to {last}. "
        "The table beside it gives the numbers.",
        labels,
        disclosure_series,
    )
    consent_chart = bar_chart(
        "consents-chart",
        "Consents given and withdrawn per month",
        f"Bar chart of consents given and withdrawn each month, {first} to {last}. "
        "The table beside it gives the numbers.",
        labels,
        consent_series,
    )
    return render(
        request, "charts.html", viewer=viewer, disclosure_chart=disclosure_chart, consent_chart=consent_chart,
        recipients=[names.get(r, r) for r in recipients], disclosure_rows=_table(months, recipients, disclosures),
        consent_rows=_table(months, [GIVEN, WITHDRAWN], consents), any_disclosures=bool(recipients),
    )  # fmt: skip
