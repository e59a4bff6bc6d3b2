"""Benchmark: velocity. On a project of 100,000 production samples, the time from the answer that
crosses ``min_new_labels`` to a new champion serving predictions and the queue re-ranked by it,
with a real Celery worker. A benchmark, not a test: it prints figures beside the goal and asserts
nothing.

1. drops and creates its own database (``--db-name``) and migrates it;
2. creates a project (numeric, categorical and text fields; 3 labels) and an annotator, ingests
   ``--seeds`` labeled seed samples and ``--samples`` production samples with a weak production
   model's probabilities, runs ANALYZE (what autovacuum would do), starts a Celery worker on Redis
   (``--broker``) under a key prefix of its own, which trains the first champion from the seeds,
   and waits until that champion has re-ranked the queue;
3. answers ``--min-new-labels`` - 1 tasks through the queue's services (the labels are the
   samples' true classes), then starts the clock and gives the answer that crosses the threshold;
4. polls the database until each step is done: the version is cut, the run is finished, the new
   model is champion (and ``predict``'s code path answers from it), the head of the queue is scored
   by it; prints the time of each step since that answer;
5. stops the worker and drops the database.

    .venv/bin/python bench/velocity.py [--samples 100000] [--seeds 300] [--min-new-labels 50]

Compare figures within one run: the machine is shared (the script prints the load average).
"""

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # this folder's queue.py would shadow the standard library's (see bench/ingest.py)

import argparse
import os
import random
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LABELS = ["cat", "dog", "bird"]
SCHEMA = {"weight": "numeric", "colour": "categorical", "note": "text"}
WEIGHT = {"cat": 4.0, "dog": 20.0, "bird": 0.4}
SPREAD = {"cat": 1.8, "dog": 7.0, "bird": 0.3}
COLOUR = {"cat": "grey", "dog": "brown", "bird": "blue"}
WORDS = {"cat": ["purrs", "whiskers", "meows"], "dog": ["barks", "fetches", "wags"], "bird": ["sings", "feathers"]}
GOAL_SECONDS = 60.0
HEAD = 20  # queue items checked for "re-ranked by the new model"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def make_item(rng: random.Random, external_id: str, truth: str) -> dict[str, Any]:
    colour = COLOUR[truth] if rng.random() < 0.7 else rng.choice(sorted(COLOUR.values()))
    word = rng.choice(WORDS[truth]) if rng.random() < 0.6 else rng.choice(WORDS[rng.choice(LABELS)])
    return {
        "external_id": external_id,
        "data": {
            "weight": round(max(0.05, rng.gauss(WEIGHT[truth], SPREAD[truth])), 3),
            "colour": colour,
            "note": f"it {word}",
        },
    }


def production_prediction(rng: random.Random, truth: str) -> dict[str, Any]:
    raw = {label: rng.random() + (0.6 if label == truth else 0.0) for label in LABELS}
    total = sum(raw.values())
    return {"probabilities": {label: value / total for label, value in raw.items()}}


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=300)
    parser.add_argument("--min-new-labels", type=int, default=50)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db-name", default="labelloop_reg_velocity")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's pool processes")
    parser.add_argument(
        "--no-analyze", action="store_true", help="leave the new rows without statistics (autovacuum off, not run yet)"
    )
    args = parser.parse_args()
    print(f"load average before: {load_average()}", flush=True)
    with psycopg.connect(f"{args.server}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db_name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.db_name)))
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.server}/{args.db_name}",
        "DJANGO_SETTINGS_MODULE": "labelloop.settings",
        "SECRET_KEY": "bench",
        "DEBUG": "0",
        "CELERY_BROKER_URL": args.broker,
        "CELERY_BROKER_KEYPREFIX": f"velocity-{secrets.token_hex(4)}:",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "LABELLOOP_VAR_DIR": os.environ.get("LABELLOOP_VAR_DIR", "/tmp/labelloop_reg"),
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection

    from feedback import registry, selection
    from feedback.ingest import samples_ingest
    from feedback.models import DatasetVersion, ModelAlias, ModelVersion, SampleScore, TrainingRun
    from labeling import queue
    from labeling.models import Role, Task, TaskStatus
    from labeling.services.people import member_set
    from labeling.services.projects import project_create

    log = open(Path(env["LABELLOOP_VAR_DIR"]) / "velocity-worker.log", "wb")  # noqa: SIM115
    worker: subprocess.Popen[bytes] | None = None
    try:
        manager = User.objects.create_user(username="manager", password="bench-password-1")
        annotator = User.objects.create_user(username="annotator", password="bench-password-1")
        project = project_create(
            creator=manager,
            name="velocity",
            labels=LABELS,
            schema=SCHEMA,
            settings={"retrain": {"min_new_labels": args.min_new_labels}},
        )
        member_set(project=project, user=annotator, role=Role.ANNOTATOR)
        rng = random.Random(3)
        truth: dict[str, str] = {}
        seeds = []
        for i in range(args.seeds):
            item = make_item(rng, f"seed-{i}", LABELS[i % 3])
            item["label"] = LABELS[i % 3]
            seeds.append(item)
        samples_ingest(project=project, items=seeds, actor=manager)
        print(f"ingesting {args.samples:,} production samples ...", flush=True)
        started = time.perf_counter()
        for start in range(0, args.samples, 10_000):
            batch = []
            for i in range(start, min(args.samples, start + 10_000)):
                label = rng.choice(LABELS)
                item = make_item(rng, f"prod-{i}", label)
                item["prediction"] = production_prediction(rng, label)
                truth[item["external_id"]] = label
                batch.append(item)
            samples_ingest(project=project, items=batch, actor=None)
        print(f"  ingested in {time.perf_counter() - started:.1f} s", flush=True)
        # What autovacuum does within a minute of such an ingest on a live database (the CI server
        # runs with autovacuum off): without statistics the planner takes the 100,000 new tasks
        # for one row. The worker starts afterwards, so every step it times sees them.
        if not args.no_analyze:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        worker = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "labelloop",
                "worker",
                "--loglevel=info",
                f"--concurrency={args.concurrency}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                "velocity@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def head_scored_by(model_id: int) -> bool:
            head = list(
                Task.objects.filter(project=project, status=TaskStatus.PENDING)
                .order_by("-priority", "id")
                .values_list("sample_id", flat=True)[:HEAD]
            )
            scored = set(SampleScore.objects.filter(sample_id__in=head).values_list("scored_by_id", flat=True))
            return bool(head) and scored == {model_id}

        first = wait_for(
            "the first champion", lambda: ModelAlias.objects.filter(project=project, alias="champion").first(), 600
        )
        wait_for("the first champion to re-rank the queue", lambda: head_scored_by(first.model_version_id), 600)
        print("first champion trained and the queue re-ranked; answering ...", flush=True)

        def answer() -> None:
            leased = queue.task_lease_next(project=project, user=annotator, role=Role.ANNOTATOR)
            assert leased is not None
            queue.annotation_submit(
                task_id=leased.task.pk,
                user=annotator,
                label=truth.get(leased.sample.external_id, "cat"),
                duration_ms=1000,
            )

        for _ in range(args.min_new_labels - 1):
            answer()
        time.sleep(1.0)
        assert not DatasetVersion.objects.filter(project=project, version=2).exists()
        print(f"load average at the clock's start: {load_average()}", flush=True)
        clock = time.perf_counter()
        answer()
        answered = time.perf_counter() - clock
        marks: dict[str, float] = {"answer committed (the annotator's request)": answered}
        v2 = wait_for("version 2", lambda: DatasetVersion.objects.filter(project=project, version=2).first(), 300)
        marks["version 2 cut"] = time.perf_counter() - clock
        run = wait_for(
            "the run of version 2",
            lambda: (
                TrainingRun.objects.filter(dataset_version=v2, status__in=["succeeded", "rejected", "failed"])
                .select_related("model_version")
                .first()
            ),
            300,
        )
        marks[f"run finished ({run.status})"] = time.perf_counter() - clock
        model = ModelVersion.objects.filter(run=run).first()
        if model is not None and run.status == "succeeded":
            champion = registry.champion(project_id=project.pk)
            assert champion is not None and champion.pk == model.pk
            served = selection.score_matrix(project, registry.load_model(model_version=champion), [seeds[0]["data"]])
            assert served.shape == (1, 3)
            marks["new champion serving predict (its code path)"] = time.perf_counter() - clock
        if model is not None:
            wait_for("the queue re-ranked by the new model", lambda: head_scored_by(model.pk), 600)
            marks["head of the queue re-ranked by the new model"] = time.perf_counter() - clock
        total = max(marks.values())
        print(f"\nload average after: {load_average()}")
        print(f"gate: {run.gate}")
        print(f"\n| step, {args.samples:,} samples, min_new_labels {args.min_new_labels} | seconds since the answer |")
        print("| --- | --- |")
        for step, seconds in marks.items():
            print(f"| {step} | {seconds:.1f} |")
        print(f"| **total** | **{total:.1f}** (goal < {GOAL_SECONDS:.0f}) |")
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        log.close()
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{args.server}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db_name)))


if __name__ == "__main__":
    main()
