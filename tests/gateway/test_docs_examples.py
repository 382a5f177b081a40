"""The README walk-through's example referral does what the README says: stored, found, and offered to 8VC01."""

from __future__ import annotations

from pathlib import Path

import orjson

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "referral-message.json"


def test_the_readme_example_referral_reaches_the_demo_host(client, token_for) -> None:
    headers = token_for("demo-gp", **{"Content-Type": "application/fhir+json"})
    stored = client.post("/fhir/$process-message", content=EXAMPLE.read_bytes(), headers=headers)
    assert stored.status_code == 200, stored.text
    found = client.get(
        "/fhir/ServiceRequest",
        params={"patient:identifier": "https://fhir.nhs.uk/Id/nhs-number|9912003888"},
        headers=token_for("demo-gp"),
    ).json()
    [referral] = [e["resource"] for e in found["entry"]]
    packets = client.get("/vcse/v1/referrals", headers=token_for("demo-vcse")).json()["referrals"]
    mine = [p for p in packets if p["referrer"]["organisation"] == "A81001"]
    assert len(mine) == 1
    accepted = client.post(
        f"/vcse/v1/referrals/{mine[0]['referral_id']}/status",
        json={"status": "accepted"},
        headers=token_for("demo-vcse"),
    )
    assert accepted.status_code == 200
    tasks = client.get(
        "/fhir/Task", params={"focus": f"ServiceRequest/{referral['id']}"}, headers=token_for("demo-gp")
    ).json()
    assert [e["resource"]["status"] for e in tasks["entry"]] == ["accepted"]
    assert b"9912003888" not in orjson.dumps(mine[0])
