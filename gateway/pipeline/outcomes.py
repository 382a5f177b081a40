"""VCSE outcomes back to the GP record: a submission becomes coded Observations about the right
patient (re-identified here, inside the gateway: the VCSE host only ever knew the referral id),
stored and searchable on the facade, distance travelled computed against the baseline, and a FHIR
transaction Bundle queued for the referrer's own FHIR endpoint when it has one."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from sqlmodel import select

from audit.events import rest_event
from gateway.context import RequestContext
from gateway.models import Organisation, OutcomeRecord, Referral
from gateway.pipeline import workflow
from gateway.storage import outbox
from gateway.storage.scope import ForTenant
from mappings.distance import change_to_observation, distance_travelled
from mappings.outcome_schema import OutcomeSubmission, parse_submission
from mappings.outcomes import observation_id, submission_to_observations
from mappings.referral_records import nhs_identifier, parse_instant
from profiles import systems
from profiles.outcomes import FhirError, Issue, conflict

OPEN_STATES = ("accepted", "in-progress", "completed")


def _prefix(referral_id: str, submission_id: str) -> str:
    """Returns a short FHIR-id-safe prefix, unique per (referral, submission), stable across retries."""
    return "out-" + hashlib.sha256(f"{referral_id}/{submission_id}".encode()).hexdigest()[:20]


def _body_hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _answer(record: OutcomeRecord, changes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "referral_id": record.referral_id,
        "submission_id": record.submission_id,
        "stage": record.stage,
        "observations": [f"Observation/{i}" for i in record.observation_ids],
        **({"distance_travelled": changes} if changes is not None else {}),
    }


def submit(ctx: RequestContext, referral_id: str, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Returns (HTTP status, answer): 201 for a new submission, 200 for an identical retry."""
    assert ctx.session is not None
    item = workflow.owned(ctx, referral_id)
    sub = parse_submission(data)
    existing = ctx.session.get(OutcomeRecord, (referral_id, sub.submission_id))
    digest = _body_hash(data)
    if existing is not None:
        if existing.body_sha256 != digest:
            raise conflict(f"submission_id {sub.submission_id} was already used with different content")
        return 200, _answer(existing)
    workflow.still_permitted(ctx, item)  # recalled, ceased or consent ended: 409, whatever the state
    if item.packet.status not in OPEN_STATES:
        raise FhirError(
            409,
            [
                Issue(
                    "business-rule",
                    f"Outcomes can be recorded once the referral is accepted; it is {item.packet.status}",
                    "status",
                )
            ],
        )
    referral = item.referral
    observations = _observations(ctx, referral, sub)
    changes = _distance(ctx, referral, sub, observations)
    repo = ctx.repo(as_gateway=True)
    for obs in observations:
        repo.create(
            obs,
            tenant=referral.tenant,
            patient_nhs=referral.patient_nhs,
            date=_effective(obs),
            resource_id=obs["id"],
        )
    record = OutcomeRecord(
        referral_id=referral_id,
        submission_id=sub.submission_id,
        body_sha256=digest,
        stage=sub.stage,
        observation_ids=[o["id"] for o in observations],
        submission=data,
    )
    ctx.session.add(record)
    _queue_write_back(ctx, referral, observations, _prefix(referral_id, sub.submission_id))
    ctx.audit(
        rest_event(
            ctx.audit_context,
            interaction="create",
            resource_type="Observation",
            resource_id=None,
            outcome=0,
            patient_nhs=referral.patient_nhs,
            description=f"{len(observations)} outcome Observations recorded for {referral_id} "
            f"(submission {sub.submission_id}, {sub.stage})",
            recorded=ctx.now(),
        )
    )
    return 201, _answer(record, changes)


def _effective(obs: dict[str, Any]) -> datetime | None:
    """Returns the instant the Observation `date` search parameter indexes: effectiveDateTime, or for a
    derived change (effectivePeriod, baseline to final) the end of the period, when the change was known."""
    return parse_instant(obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("end"))


def _references(ctx: RequestContext, referral: Referral) -> tuple[dict[str, Any], str, dict[str, Any]]:
    assert ctx.session is not None
    patient_ref = {"reference": f"Patient/{referral.patient_id}", "identifier": nhs_identifier(referral.patient_nhs)}
    host = ctx.session.get(Organisation, referral.recipient or "")
    performer: dict[str, Any] = {"identifier": {"system": systems.ODS_CODE, "value": referral.recipient}}
    if host is not None:
        performer["display"] = host.name
    return patient_ref, f"ServiceRequest/{referral.service_request_id}", performer


def _observations(ctx: RequestContext, referral: Referral, sub: OutcomeSubmission) -> list[dict[str, Any]]:
    patient_ref, sr_ref, performer = _references(ctx, referral)
    return submission_to_observations(
        sub,
        patient_ref=patient_ref,
        service_request_ref=sr_ref,
        performer=performer,
        id_prefix=_prefix(referral.referral_id, sub.submission_id),
        referral_id=referral.referral_id,
    )


def _distance(
    ctx: RequestContext, referral: Referral, sub: OutcomeSubmission, observations: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Adds derived 'distance travelled' Observations when a baseline exists; returns the changes for the answer."""
    assert ctx.session is not None
    if sub.stage == "baseline":
        return []
    baseline_row = ctx.session.exec(
        select(OutcomeRecord)
        .where(OutcomeRecord.referral_id == referral.referral_id, OutcomeRecord.stage == "baseline")
        .order_by(OutcomeRecord.created)  # type: ignore[arg-type]
    ).first()
    if baseline_row is None:
        return []
    baseline = parse_submission(baseline_row.submission)
    patient_ref, sr_ref, performer = _references(ctx, referral)
    base_prefix = _prefix(referral.referral_id, baseline.submission_id)
    final_prefix = _prefix(referral.referral_id, sub.submission_id)
    if sub.recorded_at < baseline.recorded_at:
        raise FhirError(
            422,
            [
                Issue(
                    "business-rule",
                    f"recorded_at is earlier than the baseline submission {baseline.submission_id} "
                    f"({baseline.recorded_at.isoformat()}); a {sub.stage} assessment comes after the baseline",
                    "recorded_at",
                )
            ],
        )
    answer = []
    for change in distance_travelled(baseline, sub):
        observations.append(
            change_to_observation(
                change,
                baseline_ref=f"Observation/{observation_id(base_prefix, change.source_measure)}",
                final_ref=f"Observation/{observation_id(final_prefix, change.source_measure)}",
                patient_ref=patient_ref,
                service_request_ref=sr_ref,
                performer=performer,
                id_prefix=final_prefix,
                referral_id=referral.referral_id,
            )
        )
        answer.append(
            {
                "measure": change.measure,
                "baseline": change.baseline,
                "final": change.final,
                "change": change.delta,
                "meaningful": change.meaningful,
                "threshold": change.threshold,
                "threshold_source": change.threshold_source,
            }
        )
    return answer


def transaction_bundle(
    observations: list[dict[str, Any]],
    service_request: dict[str, Any],
    identifier_of: Callable[[str], dict[str, Any] | None],
) -> dict[str, Any]:
    """Returns a FHIR transaction Bundle creating the Observations at the GP system, each only once
    (conditional create on the submission identifier: a redelivery creates nothing new).

    The GP system knows nothing of the gateway's ids, so references become ones it can resolve:
    the patient by NHS number, the referral by the GP's own ServiceRequest identifier, and a
    distance-travelled Observation's sources by their entries in the same Bundle, or by their
    identifier (`identifier_of("Observation/<id>")`) when they were sent in an earlier one.
    """
    full_urls = {
        f"Observation/{obs['id']}": "urn:uuid:"
        + str(uuid.uuid5(uuid.NAMESPACE_URL, obs["identifier"][0]["system"] + "|" + obs["identifier"][0]["value"]))
        for obs in observations
    }
    based_on = [{"type": "ServiceRequest", "identifier": i} for i in (service_request.get("identifier") or [])[:1]]
    entries = []
    for obs in observations:
        ident = obs["identifier"][0]
        resource = {k: v for k, v in obs.items() if k not in ("meta", "id")}
        resource["meta"] = {"profile": obs.get("meta", {}).get("profile", [])}
        resource["subject"] = {k: v for k, v in obs["subject"].items() if k != "reference"}
        if based_on:
            resource["basedOn"] = based_on
        else:
            resource.pop("basedOn", None)
        if "derivedFrom" in resource:
            resource["derivedFrom"] = [_source(d, full_urls, identifier_of) for d in resource["derivedFrom"]]
        entries.append(
            {
                "fullUrl": full_urls[f"Observation/{obs['id']}"],
                "resource": resource,
                "request": {
                    "method": "POST",
                    "url": "Observation",
                    "ifNoneExist": f"identifier={ident['system']}|{ident['value']}",
                },
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _source(
    ref: dict[str, Any], full_urls: dict[str, str], identifier_of: Callable[[str], dict[str, Any] | None]
) -> dict[str, Any]:
    target = ref.get("reference", "")
    if target in full_urls:
        return {"reference": full_urls[target]}
    identifier = identifier_of(target)
    return {"type": "Observation", "identifier": identifier} if identifier else ref


def _queue_write_back(ctx: RequestContext, referral: Referral, observations: list[dict[str, Any]], key: str) -> None:
    assert ctx.session is not None
    gp = ctx.session.get(Organisation, referral.tenant)
    if gp is None or not gp.fhir_endpoint:
        return
    repo = ctx.repo(as_gateway=True)
    service_request = repo.read("ServiceRequest", referral.service_request_id).resource

    def identifier_of(reference: str) -> dict[str, Any] | None:
        stored = repo.read("Observation", reference.removeprefix("Observation/")).resource
        return (stored.get("identifier") or [None])[0]

    bundle = transaction_bundle(observations, service_request, identifier_of)
    outbox.enqueue(
        ctx.session,
        ForTenant(referral.tenant),
        kind="fhir-writeback",
        target=gp.id,
        dedup_key=f"wb-{key}",
        body=orjson.dumps(bundle).decode(),
        content_type="application/fhir+json",
    )
