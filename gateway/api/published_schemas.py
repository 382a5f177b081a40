"""The JSON Schemas (draft 2020-12) of every body a VCSE CRM sends or receives, served at
/vcse/v1/schema/{name} and linked from the OpenAPI document and docs/vcse-api.md. Each is built from the
definition the gateway itself uses (the packet schema file, the outcome submission model, the status
update model), so what is published cannot drift from what is enforced."""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from gateway.api.answers import StatusUpdate, schema_of
from mappings.outcome_schema import submission_json_schema
from mappings.packet import SCHEMA_FILE, SCHEMA_VERSION

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://sp-gateway.dev/vcse/v1/schema"
URL_BASE = "/vcse/v1/schema"
SCHEMA_NAMES = ("referral-packet", "notice", "webhook-envelope", "outcome-submission", "status-update")


def schema_url(name: str) -> str:
    return f"{URL_BASE}/{name}"


@cache
def _packet() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def _stamped(schema: dict[str, Any], name: str, title: str, description: str) -> dict[str, Any]:
    """`schema` with $schema, a versioned $id, a title and a description."""
    return {
        "$schema": DRAFT,
        "$id": f"{ID_BASE}/{name}/{SCHEMA_VERSION}",
        "title": title,
        "description": description,
        **{k: v for k, v in schema.items() if k not in ("$schema", "$id", "title", "description")},
    }


def _from_packet(root: dict[str, Any]) -> dict[str, Any]:
    """The packet schema's $defs under another root."""
    defs = copy.deepcopy(_packet()["$defs"])
    return {**root, "$defs": defs}


def build(name: str) -> dict[str, Any]:
    """Returns the published schema `name`; KeyError for a name not in SCHEMA_NAMES."""
    if name == "referral-packet":
        return _packet()
    if name == "notice":
        return _stamped(
            _from_packet({"$ref": "#/$defs/notice"}),
            name,
            f"sp-gateway recall or cease notice, version {SCHEMA_VERSION}",
            "An item of GET /vcse/v1/notices, and the body of a recall or cease webhook: the referral id and a "
            "coded reason, never personal data. See docs/vcse-api.md.",
        )
    if name == "webhook-envelope":
        return _stamped(
            _from_packet({"oneOf": [{"$ref": "#/$defs/referral"}, {"$ref": "#/$defs/notice"}]}),
            name,
            f"sp-gateway webhook body, version {SCHEMA_VERSION}",
            "The JSON body the gateway POSTs to a webhook host: a referral packet (kind referral) or a recall "
            "or cease notice, exactly as the pull routes return them without `status`. The signature travels "
            "in the headers (docs/vcse-api.md, Webhooks).",
        )
    if name == "outcome-submission":
        return _stamped(
            submission_json_schema(),
            name,
            f"sp-gateway outcome submission, version {SCHEMA_VERSION}",
            "The body of POST /vcse/v1/referrals/{referral_id}/outcomes: wellbeing scores, activities and a "
            "closing summary. See docs/outcomes.md.",
        )
    if name == "status-update":
        return _stamped(
            schema_of(StatusUpdate),
            name,
            f"sp-gateway status update, version {SCHEMA_VERSION}",
            "The body of POST /vcse/v1/referrals/{referral_id}/status. A reason is required when declining.",
        )
    raise KeyError(name)
