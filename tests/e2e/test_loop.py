"""The whole loop against the running system, over HTTP only: gunicorn, a Celery worker on Redis,
PostgreSQL. Seeds train the first champion by themselves; annotators' labels cut a new version
and train again; the new model re-ranks the queue; predict, export and rollback work on the result.

The fixtures build the state step by step (project → first model → second model), once per
module, so that each test states what it needs and reads what the system did in the background.
"""

import csv
import io
import json
import os
import random
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from tests.e2e.system import Api, Live, is_postgres, poll, token_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not is_postgres(os.environ.get("DATABASE_URL")),
        reason="the e2e loop runs on PostgreSQL: set DATABASE_URL to a postgres:// URL (./run-tests does)",
    ),
]

LABELS = ["cat", "dog", "bird"]
SCHEMA = {"weight": "numeric", "colour": "categorical", "note": "text"}
MIN_NEW_LABELS = 20
N_SEEDS = 60
WAIT = 90.0  # seconds the worker gets for any one piece of background work
TERMINAL = {"succeeded", "rejected", "failed"}

WEIGHT = {"cat": 4.0, "dog": 20.0, "bird": 0.4}
SPREAD = {"cat": 1.8, "dog": 7.0, "bird": 0.3}
COLOUR = {"cat": "grey", "dog": "brown", "bird": "blue"}
WORDS = {"cat": ["purrs", "whiskers", "meows"], "dog": ["barks", "fetches", "wags"], "bird": ["sings", "feathers"]}
FILLER = ["seen in the garden", "near the fence", "on camera 3", "at night"]


def make_item(rng: random.Random, external_id: str, truth: str) -> dict[str, Any]:
    """A sample whose fields hint at ``truth`` noisily: learnable, but not every one is easy."""
    colour = COLOUR[truth] if rng.random() < 0.7 else rng.choice(sorted(COLOUR.values()))
    word = rng.choice(WORDS[truth]) if rng.random() < 0.6 else rng.choice(WORDS[rng.choice(LABELS)])
    return {
        "external_id": external_id,
        "data": {
            "weight": round(max(0.05, rng.gauss(WEIGHT[truth], SPREAD[truth])), 3),
            "colour": colour,
            "note": f"it {word}, {rng.choice(FILLER)}",
        },
        "observed_at": f"2026-10-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00+00:00",
    }


def production_prediction(rng: random.Random, truth: str) -> dict[str, Any]:
    """What a weak production model said: right more often than not, rarely sure."""
    raw = {label: rng.random() + (0.8 if label == truth else 0.0) for label in LABELS}
    total = sum(raw.values())
    probabilities = {label: value / total for label, value in raw.items()}
    return {"label": max(probabilities, key=probabilities.__getitem__), "probabilities": probabilities}


@dataclass
class Loop:
    live: Live
    admin: Api
    annotator: Api
    producer: Api
    stranger: Api
    project_id: int
    truth: dict[str, str] = field(default_factory=dict)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # external_id -> data
    seeds: list[str] = field(default_factory=list)
    unscored_early: list[str] = field(default_factory=list)
    ingests: dict[str, Any] = field(default_factory=dict)
    labeled: list[str] = field(default_factory=list)
    queue_before: dict[str, float] = field(default_factory=dict)

    @property
    def p(self) -> str:
        return f"/api/projects/{self.project_id}"

    def sample(self, external_id: str) -> dict[str, Any]:
        return dict(self.admin.ok("GET", f"{self.p}/samples/{external_id}/"))

    def models(self) -> list[dict[str, Any]]:
        return list(self.admin.ok("GET", f"{self.p}/models/")["results"])

    def champions(self) -> list[int]:
        return [m["version"] for m in self.models() if "champion" in m["aliases"]]

    def queue(self, limit: int = 1000) -> list[dict[str, Any]]:
        return list(self.admin.ok("GET", f"{self.p}/queue/?limit={limit}"))

    def datasets(self) -> list[dict[str, Any]]:
        return list(self.admin.ok("GET", f"{self.p}/datasets/")["results"])

    def run_for(self, dataset_version: int) -> dict[str, Any] | None:
        runs = self.admin.ok("GET", f"{self.p}/runs/")["results"]
        found = [r for r in runs if r["dataset_version"] == dataset_version]
        if not found:
            return None
        run = self.admin.ok("GET", f"/api/runs/{found[0]['run_id']}/")
        return dict(run) if run["status"] in TERMINAL else None


def ingest(api: Api, project_path: str, items: list[dict[str, Any]], *, ndjson: bool) -> dict[str, Any]:
    if ndjson:
        body = "\n".join(json.dumps(item) for item in items) + "\n"
        response = api.post(
            f"{project_path}/samples/", data=body.encode(), headers={"Content-Type": "application/x-ndjson"}
        )
    else:
        response = api.post(f"{project_path}/samples/", json=items)
    assert response.status_code == 200, response.text[:2000]
    return dict(response.json())


# ---------------------------------------------------------------- the state, built once per module


@pytest.fixture(scope="module")
def loop(live: Live) -> Iterator[Loop]:
    """Users, a project, members, and every kind of ingest (seed labels, JSON, NDJSON, no probabilities)."""
    admin = Api(live.base_url, token_for(live.base_url, *live.superuser))
    for username in ("annotator-1", "producer", "stranger"):
        created = admin.ok("POST", "/api/users/", 201, json={"username": username, "password": f"{username}-pw-e2e"})
        assert created["username"] == username
    project = admin.ok(
        "POST",
        "/api/projects/",
        201,
        json={
            "name": "Garden camera",
            "labels": LABELS,
            "schema": SCHEMA,
            "overlap": 1,
            "retrain": {"min_new_labels": MIN_NEW_LABELS},
        },
    )
    state = Loop(
        live=live,
        admin=admin,
        annotator=Api(live.base_url, token_for(live.base_url, "annotator-1", "annotator-1-pw-e2e")),
        producer=Api(live.base_url, token_for(live.base_url, "producer", "producer-pw-e2e")),
        stranger=Api(live.base_url, token_for(live.base_url, "stranger", "stranger-pw-e2e")),
        project_id=int(project["id"]),
    )
    admin.ok("POST", f"{state.p}/members/", 201, json={"username": "annotator-1", "role": "annotator"})
    admin.ok("POST", f"{state.p}/members/", 201, json={"username": "producer", "role": "ingest"})

    rng = random.Random(20261101)

    def items(prefix: str, n: int, *, labeled: bool = False, probabilities: bool = True) -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            truth = LABELS[i % 3] if labeled else rng.choice(LABELS)  # seeds: every label, evenly
            item = make_item(rng, f"{prefix}-{i}", truth)
            if labeled:
                item["label"] = truth
            elif probabilities:
                item["prediction"] = production_prediction(rng, truth)
                item["model_version"] = "prod-7"
            state.truth[item["external_id"]] = truth
            state.sent[item["external_id"]] = item["data"]
            out.append(item)
        return out

    seeds = items("seed", N_SEEDS, labeled=True)
    state.seeds = [item["external_id"] for item in seeds]
    state.ingests["seeds"] = ingest(admin, state.p, seeds, ndjson=False)

    batch_json = items("prod-a", 120)
    invalid = {"external_id": "bad-1", "data": {"weight": "heavy", "colour": "grey"}}
    state.ingests["json"] = ingest(state.producer, state.p, [*batch_json, invalid], ndjson=False)
    batch_ndjson = items("prod-b", 80)
    state.ingests["ndjson"] = ingest(state.producer, state.p, batch_ndjson, ndjson=True)
    early = items("raw-early", 10, probabilities=False)
    state.unscored_early = [item["external_id"] for item in early]
    state.ingests["early"] = ingest(state.producer, state.p, early, ndjson=True)
    state.ingests["again"] = ingest(state.producer, state.p, batch_json[:5], ndjson=False)
    yield state
    for api in (state.admin, state.annotator, state.producer, state.stranger):
        api.session.close()  # no idle keep-alive connection holds gunicorn's shutdown back


@pytest.fixture(scope="module")
def first_model(loop: Loop) -> Loop:
    """Wait for what the worker does by itself: the seeds exceed min_new_labels, so it cuts the
    first version, trains it, and registers the first champion."""
    poll("dataset version 1", lambda: [d for d in loop.datasets() if d["version"] == 1], WAIT)
    poll("the training run of version 1 to finish", lambda: loop.run_for(1), WAIT)
    poll("a champion model", loop.champions, WAIT)
    return loop


def _queued_scored_by(loop: Loop, version: int, n: int = 5) -> list[str] | None:
    """External ids of the first ``n`` queue items when all of them are scored by model ``version``."""
    top = [item["external_id"] for item in loop.queue(limit=n)]
    scored = [loop.sample(external_id)["scores"]["scored_by"] for external_id in top]
    return top if top and all(v == version for v in scored) else None


@pytest.fixture(scope="module")
def second_model(first_model: Loop) -> Loop:
    """Label through the API until min_new_labels is crossed; wait for the new version, its run
    and its model version."""
    loop = first_model
    poll("the queue to be re-scored by model 1", lambda: _queued_scored_by(loop, 1), WAIT)
    loop.queue_before = {item["external_id"]: item["priority"] for item in loop.queue()}
    for _ in range(MIN_NEW_LABELS):
        response = loop.annotator.post(f"{loop.p}/tasks/next/")
        assert response.status_code == 200, response.text
        task = response.json()
        assert task["data"] == loop.sent[task["external_id"]]
        truth = loop.truth[task["external_id"]]
        loop.annotator.ok("POST", f"/api/tasks/{task['task_id']}/annotations/", 201, json={"label": truth})
        loop.labeled.append(task["external_id"])
    poll("dataset version 2, cut by the worker from the new labels", lambda: len(loop.datasets()) >= 2, WAIT)
    poll("the training run of version 2 to finish", lambda: loop.run_for(2), WAIT)
    return loop


# ---------------------------------------------------------------- the tests, in the loop's order


def test_healthz_answers_with_the_live_broker(live: Live) -> None:
    response = requests.get(live.url("/healthz"), timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok", "database": True, "broker": True}
    assert requests.get(live.url("/api/projects/"), timeout=30).status_code == 401


def test_ingest_stores_json_and_ndjson_and_reports_the_rest(loop: Loop) -> None:
    assert loop.ingests["seeds"] == {"created": N_SEEDS, "duplicates": 0, "rejected": []}
    assert loop.ingests["json"]["created"] == 120
    assert [(r["index"], r["external_id"]) for r in loop.ingests["json"]["rejected"]] == [(120, "bad-1")]
    assert loop.ingests["ndjson"] == {"created": 80, "duplicates": 0, "rejected": []}
    assert loop.ingests["early"] == {"created": 10, "duplicates": 0, "rejected": []}
    assert loop.ingests["again"] == {"created": 0, "duplicates": 5, "rejected": []}
    project = loop.admin.ok("GET", loop.p + "/")
    assert project["counts"]["samples"] == N_SEEDS + 120 + 80 + 10
    assert project["retrain"]["min_new_labels"] == MIN_NEW_LABELS
    sample = loop.sample("prod-b-3")
    assert sample["data"] == loop.sent["prod-b-3"]
    assert sample["prediction"]["model_version"] == "prod-7"
    assert loop.admin.get(f"{loop.p}/samples/never-sent/").status_code == 404
    # Another project's member sees nothing of this one.
    assert loop.stranger.get(loop.p + "/").status_code == 404
    assert loop.stranger.get(f"{loop.p}/queue/").status_code == 404
    assert loop.project_id not in [p["id"] for p in loop.stranger.ok("GET", "/api/projects/")["results"]]


def test_seed_labels_train_the_first_champion_in_the_worker(first_model: Loop) -> None:
    loop = first_model
    first = loop.admin.ok("GET", f"{loop.p}/datasets/1/")
    assert first["parent"] is None
    assert first["size"] == N_SEEDS
    assert first["diff"] == {"added": N_SEEDS, "changed": 0, "removed": 0}
    run = loop.run_for(1)
    assert run is not None
    assert run["status"] == "succeeded", run
    assert run["gate"]["passed"] is True and run["gate"]["reasons"]
    assert run["model_version"] == 1
    models = loop.models()
    assert [m["version"] for m in models] == [1]
    assert models[0]["aliases"] == ["champion"]
    assert models[0]["dataset_version"] == 1
    assert 0.0 <= models[0]["metrics"]["accuracy"] <= 1.0
    assert len(models[0]["digest"]) == 64


def test_samples_without_probabilities_are_scored_by_the_model(first_model: Loop) -> None:
    loop = first_model

    def scored(external_ids: list[str]) -> list[dict[str, Any]] | None:
        details = [loop.sample(external_id) for external_id in external_ids]
        return details if all(d["scores"]["scored_by"] is not None for d in details) else None

    # Sent before any model existed: the first model's re-score reaches them.
    for detail in poll("the early raw samples to be scored", lambda: scored(loop.unscored_early), WAIT):
        assert detail["prediction"] is None
        assert 0.0 <= detail["scores"]["uncertainty"] <= 1.0
        assert detail["suggestion"]["label"] in LABELS
    # Sent once a model exists: scored by the newest one, in the worker.
    rng = random.Random(7)
    late = [make_item(rng, f"raw-late-{i}", LABELS[i % 3]) for i in range(12)]
    for i, item in enumerate(late):
        loop.truth[item["external_id"]] = LABELS[i % 3]
        loop.sent[item["external_id"]] = item["data"]
    assert ingest(loop.producer, loop.p, late, ndjson=False)["created"] == 12
    ids = [item["external_id"] for item in late]
    versions = {m["version"] for m in loop.models()}
    for detail in poll("the late raw samples to be scored", lambda: scored(ids), WAIT):
        assert detail["scores"]["scored_by"] in versions
        assert detail["tasks"][0]["reason"] == "uncertainty"


def test_new_labels_cut_a_child_version_and_train_again(second_model: Loop) -> None:
    loop = second_model
    versions = loop.datasets()
    assert [v["version"] for v in versions] == [2, 1]
    second = loop.admin.ok("GET", f"{loop.p}/datasets/2/")
    assert second["parent"] == 1
    assert second["diff"] == {"added": MIN_NEW_LABELS, "changed": 0, "removed": 0}
    assert second["size"] == N_SEEDS + MIN_NEW_LABELS
    assert second["hash"] != versions[1]["hash"]
    labels = loop.admin.ok("GET", f"{loop.p}/labels/?page_size=500")["results"]
    by_id = {row["external_id"]: row for row in labels}
    for external_id in loop.labeled:
        assert by_id[external_id]["label"] == loop.truth[external_id]
        assert by_id[external_id]["method"] == "majority"
        assert by_id[external_id]["n_annotations"] == 1

    run = loop.run_for(2)
    assert run is not None
    assert run["status"] in ("succeeded", "rejected"), run
    assert run["gate"]["reasons"], run
    assert run["gate"]["passed"] is (run["status"] == "succeeded")
    assert run["model_version"] == 2
    models = {m["version"]: m for m in loop.models()}
    assert set(models) == {1, 2}
    assert models[2]["dataset_version"] == 2
    assert models[2]["metrics"]["accuracy"] is not None
    assert loop.champions() == ([2] if run["status"] == "succeeded" else [1])


def test_the_newest_model_re_ranks_the_queue(second_model: Loop) -> None:
    loop = second_model
    poll("the queue to be re-scored by model 2", lambda: _queued_scored_by(loop, 2, n=10), WAIT)
    queue = loop.queue()
    priorities = [item["priority"] for item in queue]
    assert priorities == sorted(priorities, reverse=True)
    # The queue's order is the newest model's uncertainty. Its head (priority above 1) is chosen
    # batch by batch as diverse picks among the most uncertain samples (feedback/ranking.py), so
    # the first hand-outs are more uncertain than the last; a tail, when the pool is larger than
    # the head, has the uncertainty itself as its priority.
    first, last = queue[:10], queue[-10:]
    first_scores = [loop.sample(item["external_id"])["scores"] for item in first]
    last_scores = [loop.sample(item["external_id"])["scores"] for item in last]
    assert {scores["scored_by"] for scores in first_scores + last_scores} == {2}
    mean = statistics.fmean
    assert mean(s["uncertainty"] for s in first_scores) > mean(s["uncertainty"] for s in last_scores)
    for item, scores in zip(last, last_scores, strict=True):
        if item["priority"] <= 1:
            assert scores["uncertainty"] == pytest.approx(item["priority"])
    now = {item["external_id"]: item["priority"] for item in queue}
    assert not set(loop.labeled) & set(now), "labeled samples must leave the queue"
    common = set(now) & set(loop.queue_before)
    assert len(common) >= 100
    changed = [external_id for external_id in common if abs(now[external_id] - loop.queue_before[external_id]) > 1e-9]
    assert len(changed) >= len(common) // 2, f"only {len(changed)} of {len(common)} priorities moved"
    # The default budgets: mostly uncertainty, a share of diversity and random picks.
    reasons = [item["reason"] for item in queue]
    assert set(reasons) <= {"uncertainty", "diversity", "random"}
    assert reasons.count("uncertainty") > len(reasons) // 2


def test_predict_answers_from_the_champion_in_item_order(second_model: Loop) -> None:
    loop = second_model
    wanted = ["dog", "bird", "cat", "dog", "bird"]
    items = [
        {"data": {"weight": WEIGHT[label], "colour": COLOUR[label], "note": f"it {WORDS[label][0]}"}}
        for label in wanted
    ]
    body = loop.annotator.ok("POST", f"{loop.p}/predict/", json={"items": items})
    assert body["model_version"] == loop.champions()[0]
    assert [p["label"] for p in body["predictions"]] == wanted
    for prediction in body["predictions"]:
        assert set(prediction["probabilities"]) == set(LABELS)
        assert abs(sum(prediction["probabilities"].values()) - 1.0) < 1e-6
        assert prediction["label"] == max(prediction["probabilities"], key=prediction["probabilities"].__getitem__)
    bad = loop.annotator.post(f"{loop.p}/predict/", json={"items": [{"data": {"height": 3}}]})
    assert bad.status_code == 400


def _expected_rows(loop: Loop, external_ids: list[str]) -> dict[str, dict[str, Any]]:
    return {
        external_id: {"external_id": external_id, **loop.sent[external_id], "label": loop.truth[external_id]}
        for external_id in external_ids
    }


def test_exports_return_the_rows_of_a_version(second_model: Loop) -> None:
    loop = second_model
    # The columns follow the project's schema as the API serves it (PostgreSQL's jsonb keeps the
    # fields in its own key order, not the order they were given in).
    fields = list(loop.admin.ok("GET", loop.p + "/")["schema"])
    assert sorted(fields) == sorted(SCHEMA)
    columns = ["external_id", *fields, "label"]
    for version, members in ((1, loop.seeds), (2, [*loop.seeds, *loop.labeled])):
        expected = _expected_rows(loop, members)
        response = loop.admin.get(f"{loop.p}/datasets/{version}/export/?format=jsonl")
        assert response.status_code == 200, response.text[:500]
        assert response.headers["X-Dataset-Version"] == str(version)
        rows = [json.loads(line) for line in response.text.splitlines() if line.strip()]
        assert all(list(row) == columns for row in rows)
        assert {row["external_id"]: row for row in rows} == expected
        assert len(rows) == len(expected)

        response = loop.admin.get(f"{loop.p}/datasets/{version}/export/?format=csv")
        assert response.status_code == 200, response.text[:500]
        assert response.headers["Content-Type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(response.text)))
        assert response.text.splitlines()[0].split(",") == columns
        assert len(table) == len(expected)
        for row in table:
            want = expected[row["external_id"]]
            assert float(row["weight"]) == want["weight"]
            assert (row["colour"], row["note"], row["label"]) == (want["colour"], want["note"], want["label"])


def test_promoting_an_older_version_rolls_back(second_model: Loop) -> None:
    loop = second_model
    if loop.champions() != [2]:
        loop.admin.ok("POST", f"{loop.p}/models/2/promote/", json={"reason": "e2e: take the newest first"})
    assert loop.champions() == [2]
    rolled = loop.admin.ok("POST", f"{loop.p}/models/1/promote/", json={"reason": "e2e rollback"})
    assert rolled["version"] == 1 and "champion" in rolled["aliases"]
    assert loop.champions() == [1]
    body = loop.admin.ok("POST", f"{loop.p}/predict/", json={"items": [{"data": {"weight": 20.0}}]})
    assert body["model_version"] == 1
    # The promoted champion re-scores the queue.
    poll("the queue to be re-scored by the promoted model 1", lambda: _queued_scored_by(loop, 1), WAIT)
    assert loop.admin.post(f"{loop.p}/models/99/promote/").status_code == 404
    assert loop.annotator.post(f"{loop.p}/models/2/promote/").status_code == 403
