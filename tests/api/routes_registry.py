"""Security-matrix entries of the registry stage's endpoints (see tests/api/test_security.py)."""

from typing import Any


def entries(Entry: Any, P: str) -> list[Any]:
    return [
        Entry("GET", P + "datasets/<int:version>/tags/", "/api/projects/{project}/datasets/{dataset}/tags/"),
        Entry(
            "POST",
            P + "datasets/<int:version>/tags/",
            "/api/projects/{project}/datasets/{dataset}/tags/",
            {"name": "audited-2026-q4"},
            action="manage",
        ),
        # After the POST above in the matrix's order: the owner removes the tag it just added.
        Entry(
            "DELETE",
            P + "datasets/<int:version>/tags/",
            "/api/projects/{project}/datasets/{dataset}/tags/?name=audited-2026-q4",
            action="manage",
        ),
        Entry(
            "POST",
            P + "datasets/prune/",
            "/api/projects/{project}/datasets/prune/",
            {"retention_days": 30, "dry_run": True},
            action="manage",
        ),
        Entry("GET", P + "models/<int:version>/", "/api/projects/{project}/models/{model}/"),
        Entry("GET", P + "models/history/", "/api/projects/{project}/models/history/"),
        # The owner's call answers 409 (one model: nothing to roll back to), which the matrix allows.
        Entry(
            "POST", P + "models/rollback/", "/api/projects/{project}/models/rollback/", {"reason": "r"}, action="manage"
        ),
    ]
