"""Label-quality audits against the running system, over HTTP only: the worker finds likely label
errors after the automatic cut (on the training queue) and re-estimates Dawid-Skene (on the
default queue); the manager reads the audit and sends the suspects to review."""

import os
import random
from typing import Any

import pytest

from tests.e2e.system import Api, Live, is_postgres, poll, token_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not is_postgres(os.environ.get("DATABASE_URL")),
        reason="the e2e tests run on PostgreSQL: set DATABASE_URL to a postgres:// URL (./run-tests does)",
    ),
]

LABELS = ["low", "mid", "high"]
CENTRE = {"low": 0.0, "mid": 5.0, "high": 10.0}
FLIPPED = {4, 19, 33, 47}
WAIT = 90.0


def item(rng: random.Random, external_id: str, truth: str, label: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "external_id": external_id,
        "data": {"x": round(rng.gauss(CENTRE[truth], 1.0), 3), "y": round(rng.gauss(-CENTRE[truth], 1.0), 3)},
    }
    if label is not None:
        out["label"] = label
    return out


def test_audits_run_in_the_worker_and_reach_review(live: Live) -> None:
    rng = random.Random(6)
    admin = Api(live.base_url, token_for(live.base_url, *live.superuser))
    for name in ("audit-ann", "audit-bob"):
        admin.ok("POST", "/api/users/", 201, json={"username": name, "password": f"{name}-pw-e2e"})
    project = admin.ok(
        "POST",
        "/api/projects/",
        201,
        json={
            "name": "Audited",
            "labels": LABELS,
            "schema": {"x": "numeric", "y": "numeric"},
            "overlap": 2,
            "consensus": {"method": "dawid_skene"},
            "retrain": {"min_new_labels": 40},
        },
    )
    p = f"/api/projects/{project['id']}"
    for name in ("audit-ann", "audit-bob"):
        admin.ok("POST", f"{p}/members/", 201, json={"username": name, "role": "annotator"})

    # Seed labels, a few of them wrong: the automatic cut trains, and the worker audits the version.
    seeds = []
    for i in range(60):
        truth = LABELS[i % 3]
        given = LABELS[(i + 1) % 3] if i in FLIPPED else truth
        seeds.append(item(rng, f"seed-{i}", truth, given))
    assert admin.ok("POST", f"{p}/samples/", json=seeds)["created"] == 60
    poll("the automatic cut", lambda: admin.ok("GET", f"{p}/datasets/")["results"], WAIT)
    # The worker also audits each automatic cut; the manager's button asks for it either way.
    admin.ok("POST", f"{p}/label-issues/find/", 202)
    issues = poll(
        "likely label errors from the worker",
        lambda: admin.ok("GET", f"{p}/label-issues/")["results"],
        WAIT,
    )
    flagged = {issue["external_id"] for issue in issues}
    assert len(flagged & {f"seed-{i}" for i in FLIPPED}) >= 3
    for issue in issues:
        if issue["external_id"] in {f"seed-{i}" for i in FLIPPED}:
            seed = int(issue["external_id"].split("-")[1])
            assert issue["suggested_label"] == LABELS[seed % 3]

    # Two annotators answer new samples through the queue.
    answers = {f"new-{i}": LABELS[i % 3] for i in range(6)}
    admin.ok("POST", f"{p}/samples/", json=[item(rng, name, label) for name, label in answers.items()])
    for name in ("audit-ann", "audit-bob"):
        api = Api(live.base_url, token_for(live.base_url, name, f"{name}-pw-e2e"))
        while (task := api.post(f"{p}/tasks/next/")).status_code == 200:
            body = task.json()
            answer = answers.get(body["external_id"], "low")
            api.ok(
                "POST", f"/api/tasks/{body['task_id']}/annotations/", 201, json={"label": answer, "duration_ms": 900}
            )
    admin.ok("POST", f"{p}/consensus/reestimate/", 202)
    audit = poll(
        "the Dawid-Skene re-estimate from the worker",
        lambda: (body := admin.ok("GET", f"{p}/audit/"))["consensus"]["estimate"] and body,
        WAIT,
    )
    rows = {row["username"]: row for row in audit["annotators"]}
    assert rows["audit-ann"]["n_annotations"] == rows["audit-bob"]["n_annotations"] == 6
    assert audit["agreement"]["krippendorff_alpha"] == 1.0
    labels = {row["external_id"]: row for row in admin.ok("GET", f"{p}/labels/?page_size=200")["results"]}
    assert all(
        labels[name]["label"] == label and labels[name]["method"] == "dawid_skene" for name, label in answers.items()
    )
    assert audit["label_issues"] and audit["label_issue_counts"]["open"] == len(issues)

    # One action sends every open suspect to review.
    assert admin.ok("POST", f"{p}/label-issues/review/")["sent"] == len(issues)
    assert admin.ok("GET", f"{p}/label-issues/?status=in_review")["count"] == len(issues)
