"""The JSON bodies the plain-JSON APIs (/vcse/v1, /admin/v1) take and give, as pydantic models.

They describe the OpenAPI document (request and response schemas a CRM's code generator reads) and
the published JSON Schemas; request models also validate. Errors on every route are an
OperationOutcome (`OperationOutcome` below), on the FHIR routes and the JSON APIs alike.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

VCSE_STATUSES = ("accepted", "declined", "in-progress", "completed")
PacketStatus = Literal["new", "accepted", "declined", "on-hold", "in-progress", "completed", "recalled", "ceased"]


class StatusUpdate(BaseModel):
    """A VCSE host's decision or progress on a referral."""

    model_config = ConfigDict(extra="forbid", title="StatusUpdate")
    status: Literal["accepted", "declined", "on-hold", "in-progress", "completed"] = Field(
        description="accepted | declined (a reason is required) | on-hold | in-progress | completed"
    )
    reason: str | None = Field(default=None, max_length=500, description="Why (required when declined)")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class SchemaRef(_Open):
    url: str = Field(description="Where the JSON Schema of this body is served")
    version: str


class Referrer(_Open):
    organisation: str = Field(description="ODS code of the referring organisation")
    name: str | None = None


class ContactRoute(_Open):
    type: Literal["phone", "email", "sms"]
    value: str
    use: Literal["home", "work", "temp", "mobile"] | None = None


class Address(_Open):
    lines: list[str] | None = None
    city: str | None = None
    district: str | None = None
    postcode: str | None = None
    text: str | None = None


class Person(_Open):
    """Only the fields the data-sharing agreement and the person's consent allow; the rest are absent."""

    first_name: str | None = None
    preferred_name: str | None = None
    contact_routes: list[ContactRoute] | None = None
    preferred_contact_time: str | None = None
    language: str | None = None
    interpreter_required: bool | None = None
    accessibility_needs: list[str] | None = None
    nhs_number: str | None = None
    date_of_birth: str | None = None
    address: Address | None = None
    gender: Literal["male", "female", "other", "unknown"] | None = None


class ReferralDetails(_Open):
    need_categories: list[str] | None = Field(default=None, description="Coded needs only, never free text")
    reason_text: str | None = Field(default=None, description="Only where the agreement names this field")
    priority: Literal["routine", "urgent", "asap", "stat"] | None = None
    what_matters_to_me: str | None = None
    safeguarding_concern: bool | None = Field(default=None, description="Present only as true; never the detail")


class ReferralView(_Open):
    """A referral packet as the host may see it now (JSON Schema: /vcse/v1/schema/referral-packet). A recalled
    or ceased referral carries only referral_id, packet_id and status."""

    referral_id: str = Field(description="Pseudonymous: the only id a VCSE host uses for this referral")
    packet_id: str
    status: PacketStatus
    schema_: SchemaRef | None = Field(default=None, alias="schema")
    kind: Literal["referral"] | None = None
    created_at: str | None = None
    recipient: str | None = None
    referrer: Referrer | None = None
    person: Person | None = None
    referral: ReferralDetails | None = None


class Feed(BaseModel):
    cursor: str = Field(description="Opaque: pass it as ?since= next time to get only what changed after this answer")
    more: bool = Field(description="True when this page stopped early: ask again at once with the cursor")
    count: int


class ReferralList(Feed):
    referrals: list[ReferralView]


class Notice(_Open):
    """A recall (the referrer cancelled) or cease (consent ended) notice: no personal data
    (JSON Schema: /vcse/v1/schema/notice)."""

    schema_: SchemaRef = Field(alias="schema")
    kind: Literal["recall", "cease"]
    packet_id: str
    referral_id: str
    created_at: str
    recipient: str
    reason: Literal["revoked", "entered-in-error", "consent-withdrawn", "consent-expired"]
    reason_text: str


class NoticeList(Feed):
    notices: list[Notice]


class StatusAnswer(BaseModel):
    referral_id: str
    status: PacketStatus
    task_status: str | None = Field(description="The GP's FHIR Task.status for this referral")


class AckAnswer(StatusAnswer):
    acknowledged_at: str = Field(description="When the host first acknowledged this packet (ISO 8601)")


class DistanceTravelled(BaseModel):
    measure: str
    baseline: float
    final: float
    change: float
    meaningful: bool | None
    threshold: float | None
    threshold_source: str | None


class OutcomeAnswer(BaseModel):
    referral_id: str
    submission_id: str
    stage: Literal["baseline", "review", "final"]
    observations: list[str] = Field(description="References of the FHIR Observations written for the GP")
    distance_travelled: list[DistanceTravelled] | None = None


class SandboxReferral(BaseModel):
    referral_id: str
    packet_id: str | None = Field(description="None when the sandbox referral could not be offered to the host")
    status: str


class SchemaIndex(BaseModel):
    schemas: dict[str, str] = Field(description="name -> URL of each published JSON Schema")


# --- admin ---


class Agreement(BaseModel):
    allowed_fields: list[str]


class OrganisationView(BaseModel):
    id: str
    name: str
    kind: Literal["gp-practice", "referrer", "vcse", "icb"]
    identifier_system: str
    delivery_mode: Literal["pull", "webhook"]
    webhook_url: str | None
    fhir_endpoint: str | None
    data_sharing_agreement: Agreement
    active: bool
    webhook_secret: str | None = Field(default=None, description="Shown once, when a webhook host is created")


class OrganisationList(BaseModel):
    organisations: list[OrganisationView]


class SecretAnswer(BaseModel):
    id: str
    webhook_secret: str


class ClientView(BaseModel):
    client_id: str
    organisation: str
    role: str
    scopes: list[str]
    active: bool | None = None
    kids: list[str | None] | None = None


class ClientList(BaseModel):
    clients: list[ClientView]


class DisabledClient(BaseModel):
    client_id: str
    active: bool


class Delivery(BaseModel):
    id: int
    kind: str
    target: str
    message_id: str
    status: Literal["pending", "delivered", "dead", "withdrawn"]
    attempts: int
    next_attempt_at: str
    last_error: str | None


class DeliveryList(BaseModel):
    deliveries: list[Delivery]


class Requeued(BaseModel):
    requeued: int


# --- errors ---


class Coding(BaseModel):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class CodeableConcept(BaseModel):
    coding: list[Coding] | None = None
    text: str | None = None


class OutcomeIssue(BaseModel):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str = Field(description="FHIR IssueType (invalid, required, value, not-found, business-rule, ...)")
    details: CodeableConcept | None = Field(default=None, description="BaRS error code (REC_BAD_REQUEST, ...)")
    diagnostics: str | None = Field(default=None, description="What was wrong and where, in words")
    expression: list[str] | None = Field(default=None, description="Path of the offending field")


class OperationOutcome(BaseModel):
    """Every error, on every route: FHIR R4 OperationOutcome."""

    model_config = ConfigDict(extra="allow")
    resourceType: Literal["OperationOutcome"]
    issue: list[OutcomeIssue]


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """Returns the model's JSON Schema (draft 2020-12) by alias, self-contained ($defs inside)."""
    return model.model_json_schema(by_alias=True)
