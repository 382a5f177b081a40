"""FHIR OperationOutcome issues and the one error every layer raises.

An `Issue` is one `OperationOutcome.issue`; `FhirError` carries a list of them plus the
HTTP status, so that profile checks, storage conflicts and auth failures all leave the
gateway in the same shape. BaRS error codes go in `issue.details` with the system
`https://fhir.nhs.uk/CodeSystem/http-error-codes` (BaRS API, OperationOutcome examples).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BARS_ERROR_SYSTEM = "https://fhir.nhs.uk/CodeSystem/http-error-codes"

# BaRS http-error-codes by HTTP status (BaRS API "Error handling").
BARS_CODE_BY_STATUS = {
    400: "REC_BAD_REQUEST",
    401: "REC_UNAUTHORIZED",
    403: "REC_FORBIDDEN",
    404: "REC_NOT_FOUND",
    405: "REC_METHOD_NOT_ALLOWED",
    406: "REC_NOT_ACCEPTABLE",
    409: "REC_CONFLICT",
    412: "REC_PRECONDITION_FAILED",
    413: "REC_PAYLOAD_TOO_LARGE",
    415: "REC_UNSUPPORTED_MEDIA_TYPE",
    422: "REC_UNPROCESSABLE_ENTITY",
    429: "REC_TOO_MANY_REQUESTS",
    500: "REC_SERVER_ERROR",
    503: "REC_SERVICE_UNAVAILABLE",
}


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: severity, code (IssueType), plain-English text, FHIRPath."""

    code: str
    diagnostics: str
    expression: str | None = None
    severity: str = "error"

    def to_fhir(self, status: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        bars = BARS_CODE_BY_STATUS.get(status or 0)
        if bars:
            out["details"] = {"coding": [{"system": BARS_ERROR_SYSTEM, "code": bars}]}
        out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = [self.expression]
        return out


def operation_outcome(issues: list[Issue], status: int | None = None) -> dict[str, Any]:
    """Returns an R4 OperationOutcome resource (dict) for these issues."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir(status) for i in issues]}


@dataclass
class FhirError(Exception):
    """An error that leaves the gateway as an OperationOutcome with this HTTP status."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status}: " + "; ".join(i.diagnostics for i in self.issues)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues, self.status)


def bad_request(diagnostics: str, expression: str | None = None, code: str = "invalid") -> FhirError:
    return FhirError(400, [Issue(code, diagnostics, expression)])


def not_found(diagnostics: str) -> FhirError:
    return FhirError(404, [Issue("not-found", diagnostics)])


def conflict(diagnostics: str, code: str = "duplicate") -> FhirError:
    return FhirError(409, [Issue(code, diagnostics)])


def forbidden(diagnostics: str) -> FhirError:
    return FhirError(403, [Issue("forbidden", diagnostics)])


def unauthorized(diagnostics: str) -> FhirError:
    return FhirError(401, [Issue("login", diagnostics)], {"WWW-Authenticate": 'Bearer realm="sp-gateway"'})


def unprocessable(issues: list[Issue]) -> FhirError:
    return FhirError(422, issues)
