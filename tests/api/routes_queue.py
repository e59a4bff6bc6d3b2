"""The queue stage's endpoints for the security matrix (tests/api/test_security.py)."""

from typing import Any


def entries(Entry: Any, P: str) -> list[Any]:
    return [
        Entry("POST", "api/tasks/<int:task_id>/undo/", "/api/tasks/{task}/undo/", action="label"),
        Entry(
            "POST",
            "api/tasks/<int:task_id>/review/",
            "/api/tasks/{task}/review/",
            {"label": "cat", "why": "looked at it"},
            action="export",
        ),
        Entry("GET", P + "reviews/", "/api/projects/{project}/reviews/", action="export"),
    ]
