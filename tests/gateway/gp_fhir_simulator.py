"""A GP system's FHIR endpoint, simulated: a small threaded HTTP server on 127.0.0.1 that takes the
gateway's outcome write-back the way a plain FHIR R4 server does (docs/design.md: "to a plain FHIR
server, a transaction Bundle").

`POST <url>` with a `transaction` Bundle (FHIR R4 §3.1.0.11, "Transactions"):
- the Bundle is validated with fhir.resources.R4B `Bundle`, and every entry's resource with R4B
  `Observation` (the only resource type the write-back sends); anything else is 400 with an
  OperationOutcome and nothing is stored (a transaction is all or nothing);
- each entry must be `request.method` POST to `Observation`; `request.ifNoneExist`
  (`identifier=<system>|<value>`) is honoured as a conditional create (FHIR R4 §3.1.0.8.1): when an
  Observation with that identifier is already stored nothing is created and the entry answers
  `200 OK` with the existing resource's location, so a redelivered Bundle creates nothing;
- the answer is a `transaction-response` Bundle (itself R4B-valid), one entry per request entry, in
  order, each with `response.status` and `response.location` (`Observation/<id>/_history/1`).

`lose_responses = n` makes the first n transactions commit but answer 503, as when the GP system
stored the Bundle and the answer was lost on the way back: the sender must resend, and the
resend must create nothing. Everything received is kept for the test to read.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from pydantic import ValidationError

from tests.support.loopback_server import LoopbackServer

FHIR_JSON = "application/fhir+json"


@dataclass
class Transaction:
    """One transaction Bundle the simulator received (valid or not)."""

    raw: bytes
    headers: dict[str, str]
    status: int
    created: list[str] = field(default_factory=list)  # ids created by this transaction
    matched: list[str] = field(default_factory=list)  # ids that ifNoneExist found already stored

    @property
    def bundle(self) -> dict[str, Any]:
        return json.loads(self.raw)


@dataclass
class GpState:
    """What the simulator holds and saw, guarded by one lock (handlers run on several threads)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    transactions: list[Transaction] = field(default_factory=list)
    observations: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> stored resource
    by_identifier: dict[str, str] = field(default_factory=dict)  # "system|value" -> id
    errors: list[str] = field(default_factory=list)


class Refused(Exception):
    """A transaction the simulator will not apply: 400 with this text as the OperationOutcome diagnostics."""


class GpFhirSimulator(LoopbackServer):
    path = "/fhir"

    """Starts on a port the OS chooses; `url` is the FHIR base to register as the practice's fhir_endpoint."""

    def __init__(self, *, lose_responses: int = 0) -> None:
        self.lose_responses = lose_responses
        self.state = GpState()
        super().__init__("gp-fhir-simulator")

    # --- what the tests read ---

    def transactions(self) -> list[Transaction]:
        with self.state.lock:
            return list(self.state.transactions)

    def observations(self) -> dict[str, dict[str, Any]]:
        with self.state.lock:
            return dict(self.state.observations)

    # --- the FHIR server ---

    def _transaction(self, raw: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Returns (HTTP status, answer) for one POST to the base URL."""
        item = Transaction(raw, headers, 0)
        try:
            status, answer = self._apply(raw, headers, item)
        except Refused as exc:
            status, answer = 400, _outcome(str(exc))
            with self.state.lock:
                self.state.errors.append(str(exc))
        item.status = status
        with self.state.lock:
            self.state.transactions.append(item)
        return status, answer

    def _apply(self, raw: bytes, headers: dict[str, str], item: Transaction) -> tuple[int, dict[str, Any]]:
        media = {k.lower(): v for k, v in headers.items()}.get("content-type", "").split(";")[0].strip()
        if media != FHIR_JSON:
            raise Refused(f"Content-Type must be {FHIR_JSON}, not {media or 'none'}")
        try:
            Bundle.model_validate_json(raw)
        except ValidationError as exc:
            raise Refused(f"not a valid R4 Bundle: {exc.errors()[:3]}") from None
        bundle = json.loads(raw)
        if bundle.get("type") != "transaction":
            raise Refused(f"Bundle.type must be transaction, not {bundle.get('type')}")
        entries = bundle.get("entry") or []
        if not entries:
            raise Refused("the transaction has no entries")
        for n, entry in enumerate(entries):
            _check_entry(n, entry)
        with self.state.lock:
            answers = [self._create_once(entry["resource"], entry["request"], item) for entry in entries]
            lose = self.lose_responses > 0
            self.lose_responses -= int(lose)
        if lose:
            return 503, _outcome("the transaction was applied but the answer is lost (simulated)")
        response = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "transaction-response", "entry": answers}
        Bundle.model_validate(response)  # what we answer is valid R4 too
        return 200, response

    def _create_once(self, resource: dict[str, Any], request: dict[str, Any], item: Transaction) -> dict[str, Any]:
        """Returns the transaction-response entry; the caller holds the lock (the transaction is atomic)."""
        condition = request.get("ifNoneExist")
        key = condition.removeprefix("identifier=") if condition else None
        if key is not None and key in self.state.by_identifier:
            existing = self.state.by_identifier[key]
            item.matched.append(existing)
            return {"response": {"status": "200 OK", "location": f"Observation/{existing}/_history/1"}}
        new_id = str(uuid.uuid4())
        stored = {**resource, "id": new_id, "meta": {**resource.get("meta", {}), "versionId": "1"}}
        self.state.observations[new_id] = stored
        for ident in resource.get("identifier") or []:
            self.state.by_identifier.setdefault(f"{ident.get('system')}|{ident.get('value')}", new_id)
        item.created.append(new_id)
        return {"response": {"status": "201 Created", "location": f"Observation/{new_id}/_history/1", "etag": 'W/"1"'}}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # the http.server hook name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/fhir":
                    status, answer = 404, _outcome(f"no such endpoint {self.path}")
                else:
                    try:
                        status, answer = simulator._transaction(raw, dict(self.headers.items()))
                    except Exception as exc:  # a simulator bug must show in the test, not hang it
                        with simulator.state.lock:
                            simulator.state.errors.append(f"simulator error: {exc!r}")
                        status, answer = 500, _outcome("simulator error")
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", FHIR_JSON)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # the base class names it `format`
                """Quiet: a test's output stays readable."""

        return Handler


def _check_entry(n: int, entry: dict[str, Any]) -> None:
    request = entry.get("request") or {}
    if request.get("method") != "POST" or request.get("url") != "Observation":
        raise Refused(f"entry[{n}]: only POST Observation is accepted here, not {request}")
    condition = request.get("ifNoneExist")
    if condition is not None and not (condition.startswith("identifier=") and "|" in condition):
        raise Refused(f"entry[{n}]: ifNoneExist must be identifier=<system>|<value>, not {condition!r}")
    resource = entry.get("resource") or {}
    if resource.get("resourceType") != "Observation":
        raise Refused(f"entry[{n}]: a {resource.get('resourceType')} is not accepted here")
    try:
        Observation.model_validate(resource)
    except ValidationError as exc:
        raise Refused(f"entry[{n}]: not a valid R4 Observation: {exc.errors()[:3]}") from None


def _outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": text}],
    }
