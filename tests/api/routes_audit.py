"""The security matrix's entries for the audit stage's endpoints (see tests/api/test_security.py)."""

from typing import Any


def entries(Entry: Any, P: str) -> list[Any]:
    return [
        Entry("GET", P + "audit/", "/api/projects/{project}/audit/", action="export"),
        Entry("GET", P + "audit/annotators.csv", "/api/projects/{project}/audit/annotators.csv", action="export"),
        Entry("POST", P + "audit/refresh/", "/api/projects/{project}/audit/refresh/", action="manage"),
        Entry("GET", P + "gold/", "/api/projects/{project}/gold/", action="manage"),
        Entry(
            "POST",
            P + "gold/",
            "/api/projects/{project}/gold/",
            {"items": [{"external_id": "s100", "label": "cat"}]},
            action="manage",
        ),
        Entry("DELETE", P + "gold/<path:external_id>/", "/api/projects/{project}/gold/{sample}/", action="manage"),
        Entry("GET", P + "label-issues/", "/api/projects/{project}/label-issues/", action="export"),
        Entry("POST", P + "label-issues/find/", "/api/projects/{project}/label-issues/find/", action="manage"),
        Entry("POST", P + "label-issues/review/", "/api/projects/{project}/label-issues/review/", {}, action="manage"),
        Entry("POST", P + "consensus/reestimate/", "/api/projects/{project}/consensus/reestimate/", action="manage"),
    ]
