"""What a valid R4 Consent is for the gateway: an opt-in to share with named organisations.

The structure docs/design.md describes ("Consent: opt-in to share with a named organisation"):
status active, scope consentscope#patient-privacy, a category (BaRS DRC or LOINC 59284-0),
policyRule or policy, provision.type permit, provision.actor = recipient (role IRCP and a
reference to the organisation, by ODS code where it has one).

This module checks the form only; whether a Consent permits a disclosure is the consent
package's decision. A Consent naming no recipient (the BaRS CONS01 and UK Core examples) is
valid here: it simply permits no disclosure to a VCSE host.

FHIR R4 rules checked (fhir.resources does not check bindings or invariants):
- status: required binding ConsentState (data/consent.json).
- scope and category: required (1..1, 1..*).
- ppc-1: policy or policyRule must be present.
- ppc-2..ppc-5: patient is required when scope is patient-privacy, research, adr or treatment.
- provision.type: required binding ConsentProvisionType (permit | deny), at every level.
- provision.actor: role and reference are both required (1..1).
The patient is given by reference or by NHS number identifier (valid Modulus 11); the
CONS01 example's patient is a reference only, which is enough.
"""

from __future__ import annotations

from typing import Any

from profiles.data import load
from profiles.identifiers import as_dict, as_list, nhs_number_issue, ods_identifier_issues
from profiles.jsonchecks import empty_values, json_types
from profiles.outcomes import Issue
from profiles.systems import CONSENT_SCOPE, NHS_NUMBER

_RULES = load("consent.json")


def check_consent(consent: dict[str, Any], path: str = "Consent") -> list[Issue]:
    """Returns every way `consent` fails the gateway's Consent rules ([] when it passes)."""
    return consent_rules(consent, path) + empty_values(consent, path) + json_types(consent, path)


def consent_rules(consent: dict[str, Any], path: str = "Consent") -> list[Issue]:
    """The Consent rules without the JSON form checks (for a caller that runs those over a whole Bundle)."""
    issues: list[Issue] = []
    issues += _status(consent, path)
    issues += _scope_category_patient(consent, path)
    if consent.get("policy") is None and consent.get("policyRule") is None:
        issues.append(
            Issue(
                "required",
                f"{path}.policyRule: a Consent needs a policyRule or a policy (FHIR R4 invariant ppc-1).",
                f"{path}.policyRule",
            )
        )
    issues += _provisions(consent.get("provision"), f"{path}.provision")
    return issues


def _status(consent: dict[str, Any], path: str) -> list[Issue]:
    where = f"{path}.status"
    status = consent.get("status")
    if status is None:
        return [Issue("required", f"{where}: status is required.", where)]
    if status not in _RULES["status"]:
        return [
            Issue(
                "code-invalid",
                f"{where}: not a valid Consent status; FHIR R4 allows only {', '.join(_RULES['status'])}.",
                where,
            )
        ]
    return []


def _scope_category_patient(consent: dict[str, Any], path: str) -> list[Issue]:
    issues: list[Issue] = []
    scope = consent.get("scope")
    scope_codes = {
        as_dict(c).get("code")
        for c in as_list(as_dict(scope).get("coding"))
        if as_dict(c).get("system") == CONSENT_SCOPE
    }
    if scope is None:
        issues.append(
            Issue(
                "required",
                f"{path}.scope: scope is required (expected {CONSENT_SCOPE}#{_RULES['expected_scope']}).",
                f"{path}.scope",
            )
        )
    elif _RULES["expected_scope"] not in scope_codes:
        issues.append(
            Issue(
                "business-rule",
                f"{path}.scope: the gateway reads privacy consents; expected "
                f"{CONSENT_SCOPE}#{_RULES['expected_scope']}.",
                f"{path}.scope",
                severity="warning",
            )
        )
    if not as_list(consent.get("category")):
        issues.append(Issue("required", f"{path}.category: at least one category is required.", f"{path}.category"))

    where = f"{path}.patient"
    patient = consent.get("patient")
    needs_patient = scope_codes & set(_RULES["scopes_needing_patient"])
    if patient is None:
        if needs_patient:
            issues.append(
                Issue(
                    "required",
                    f"{where}: a {sorted(needs_patient)[0]} consent must name the patient "
                    "(FHIR R4 invariants ppc-2 to ppc-5).",
                    where,
                )
            )
        return issues
    patient = as_dict(patient)
    ident = as_dict(patient.get("identifier"))
    has_nhs = ident.get("system") == NHS_NUMBER
    if has_nhs:
        problem = nhs_number_issue(ident.get("value"), f"{where}.identifier.value")
        if problem:
            issues.append(problem)
    if not patient.get("reference") and not has_nhs:
        issues.append(
            Issue(
                "required",
                f"{where}: the patient must be given by reference or by an NHS number identifier ({NHS_NUMBER}).",
                where,
            )
        )
    return issues


def _provisions(provision: Any, path: str) -> list[Issue]:
    """Checks a provision and its nested provisions (depth-first, without recursion)."""
    issues: list[Issue] = []
    stack = [(provision, path)] if provision is not None else []
    while stack:
        node, where = stack.pop()
        node = as_dict(node)
        kind = node.get("type")
        if kind is not None and kind not in _RULES["provision_type"]:
            issues.append(
                Issue(
                    "code-invalid",
                    f"{where}.type: a provision is {' or '.join(_RULES['provision_type'])}.",
                    f"{where}.type",
                )
            )
        for i, actor in enumerate(as_list(node.get("actor"))):
            actor = as_dict(actor)
            actor_path = f"{where}.actor[{i}]"
            if actor.get("role") is None:
                issues.append(
                    Issue(
                        "required",
                        f"{actor_path}.role: each actor needs a role (e.g. IRCP, information recipient).",
                        f"{actor_path}.role",
                    )
                )
            reference = as_dict(actor.get("reference"))
            if not (reference.get("reference") or reference.get("identifier")):
                issues.append(
                    Issue(
                        "required",
                        f"{actor_path}.reference: each actor must name who it is "
                        "(a reference or an identifier such as an ODS code).",
                        f"{actor_path}.reference",
                    )
                )
            else:
                issues += ods_identifier_issues(
                    as_dict(reference.get("identifier")), f"{actor_path}.reference.identifier"
                )
        nested = as_list(node.get("provision"))
        stack.extend((nested[i], f"{where}.provision[{i}]") for i in range(len(nested) - 1, -1, -1))
    return issues
