"""Security-matrix entries of issue 3's endpoints (drift, manual pushes into the queue)."""

from typing import Any


def entries(Entry: Any, P: str) -> list[Any]:
    return [
        Entry("GET", P + "drift/", "/api/projects/{project}/drift/?window=10&limit=2"),
        Entry(
            "POST",
            P + "queue/manual/",
            "/api/projects/{project}/queue/manual/",
            {"external_ids": ["s100", "s101"]},
            action="manage",
        ),
    ]
