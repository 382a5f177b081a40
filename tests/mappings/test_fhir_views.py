"""_summary / _elements views (pure)."""

from __future__ import annotations

from mappings.fhir_views import elements_view, summary_elements, summary_view

SR = {
    "resourceType": "ServiceRequest",
    "id": "sr1",
    "meta": {"versionId": "1"},
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
    "status": "active",
    "intent": "plan",
    "subject": {"reference": "Patient/p1"},
    "note": [{"text": "Lives alone"}],
    "code": {"text": "Referral to social prescribing service"},
}


def test_summary_true_keeps_the_summary_elements_and_tags_the_subset() -> None:
    view = summary_view(SR, "true")
    assert {"status", "intent", "subject", "code", "id"} <= set(view)
    assert "note" not in view and "text" not in view
    assert view["meta"]["tag"][-1]["code"] == "SUBSETTED"
    assert "note" not in summary_elements("ServiceRequest") and "status" in summary_elements("ServiceRequest")


def test_summary_data_drops_text_only_and_false_is_the_whole() -> None:
    assert set(summary_view(SR, "data")) == set(SR) - {"text"}
    assert summary_view(SR, "false") is SR
    assert set(summary_view(SR, "text")) == {"resourceType", "id", "meta", "text", "status", "intent", "subject"}


def test_elements_keeps_what_was_named_and_what_is_mandatory() -> None:
    view = elements_view(SR, frozenset({"note"}))
    assert set(view) == {"resourceType", "id", "meta", "note", "status", "intent", "subject"}
    assert SR["meta"] == {"versionId": "1"}  # the stored resource is not touched
