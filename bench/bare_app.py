"""The HTTP baseline for bench/http_throughput.py: a bare FastAPI endpoint that only parses and validates the
referral Bundle with fhir.resources (no auth, no storage, no audit)."""

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fhir.resources.R4B.bundle import Bundle

app = FastAPI()


@app.post("/fhir/$process-message")
async def parse_only(request: Request) -> Response:
    Bundle.model_validate_json(await request.body())
    return Response(b"{}", media_type="application/fhir+json")
