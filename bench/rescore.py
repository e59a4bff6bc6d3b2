"""Benchmark: scoring and re-ranking 1,000,000 unlabeled samples (issue 3's goal: <= 15 s here).

A benchmark, not a test: it prints figures beside the anchor and asserts nothing. One run:

1. drops and creates its own database (``--db-name``), migrates it, and creates a project (5 fields:
   3 numeric, 2 categorical; 4 labels) through Django;
2. inserts ``--samples`` unlabeled samples with their pending tasks and scores (production's
   probabilities) by SQL (``generate_series``: the setup is not what is measured), and labels
   ``--labeled`` more through the services, cuts a version and trains a model (LogisticRegression);
3. times ``feedback.selection.project_rescore`` three times: the first re-score after ingest (every
   stored priority is production's, so the whole queue is stale), a re-score by a second model
   trained on more labels, and the same model again (nothing to write); each with its phases
   (read, score, rank, write) measured by running the same functions one by one;
4. with ``--before``, runs the previous implementation (``git show <rev>:feedback/selection.py``,
   batches of 5,000 read through the ORM, ``UPDATE ... FROM (VALUES ...)`` and ``bulk_update``) on
   the same database for comparison;
5. drops the database.

    .venv/bin/python bench/rescore.py                      # 1,000,000 samples (about 4 minutes of setup here)
    .venv/bin/python bench/rescore.py --samples 200000 --before

Needs a PostgreSQL server (``--server``, default postgres://postgres@127.0.0.1:5432) whose user may
create databases. Compare figures within one run: the machine is shared.
"""

import sys
from pathlib import Path

# Run as bench/rescore.py, this folder comes first on sys.path (its queue_load.py is harmless, but
# keep the standard library first anyway).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import os
import subprocess
import time
import types
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 15.0
LABELS = ["approve", "review", "decline", "escalate"]
SCHEMA = {
    "amount": "numeric",
    "age_days": "numeric",
    "risk": "numeric",
    "country": "categorical",
    "device": "categorical",
}

FILL = """
INSERT INTO labeling_sample (id, external_id, data, observed_at, created_at, status, suggestion, project_id)
SELECT g, 'evt-' || g, jsonb_build_object(
        'amount', round((exp(random() * 6))::numeric, 2), 'age_days', (random() * 3650)::int,
        'risk', round(random()::numeric, 4),
        'country', (ARRAY['FR','DE','US','GB','ES','IT','NL','PL','SE','JP'])[1 + mod(g, 10)],
        'device', (ARRAY['ios','android','web','pos'])[1 + mod(g / 10, 4)]),
    now() - (%(n)s - g) * interval '1 second', now(), 1, NULL, %(project)s
FROM generate_series(%(first)s, %(last)s) g;
INSERT INTO labeling_task
    (kind, reason, priority, status, overlap, n_answers, n_leased, created_at, project_id, sample_id)
SELECT 'label', 'uncertainty', random(), 0, 1, 0, 0, now(), %(project)s, g FROM generate_series(%(first)s, %(last)s) g;
INSERT INTO feedback_samplescore (sample_id, production_label, production_probabilities, production_model_version,
    uncertainty, scored_at, project_id, scored_by_id, drift)
SELECT g, 'approve', '{"approve": 0.4, "review": 0.3, "decline": 0.2, "escalate": 0.1}', 'prod', random(), now(),
    %(project)s, NULL, NULL
FROM generate_series(%(first)s, %(last)s) g;
SELECT setval(pg_get_serial_sequence('labeling_sample', 'id'), %(last)s);
"""


def database(server: str, name: str, create: bool) -> str:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{server}/{name}"


def django_setup(url: str) -> None:
    os.environ.update(
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="labelloop.settings",
        SECRET_KEY="bench-only",
        CELERY_BROKER_URL="memory://",
        CELERY_TASK_ALWAYS_EAGER="0",
        LABELLOOP_VAR_DIR=os.environ.get("LABELLOOP_VAR_DIR", "/tmp/labelloop_bench_rescore"),
    )
    env = dict(os.environ)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def labeled_rows(n: int, start: int) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(start)
    out = []
    for i in range(n):
        amount = float(np.exp(rng.random() * 6))
        risk = float(rng.random())
        label = LABELS[int(risk > 0.5) * 2 + int(amount > 50)]
        out.append(
            {
                "external_id": f"seed-{start + i}",
                "data": {
                    "amount": round(amount, 2),
                    "age_days": int(rng.integers(0, 3650)),
                    "risk": round(risk, 4),
                    "country": str(rng.choice(["FR", "DE", "US"])),
                    "device": str(rng.choice(["ios", "web"])),
                },
                "label": label,
            }
        )
    return out


def train(project: Any, trigger: str) -> Any:
    from feedback import datasets, training
    from feedback.models import ModelVersion

    version = datasets.dataset_version_cut(project_id=project.pk, trigger=trigger).version
    run, _ = training.training_run_request(project=project, dataset_version=version, trigger=trigger)
    training.training_run_execute(run_id=run.pk)
    return ModelVersion.objects.get(run=run)


def phases(project: Any, model_version: Any) -> dict[str, float]:
    """The re-score's phases, by calling its functions one by one (what _rerank does)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from feedback import ranking, registry, selection
    from labeling.project_settings import ProjectSettings

    chosen = ProjectSettings.of(project.settings).selection
    out: dict[str, float] = {}
    t = time.perf_counter()
    with threadpool_limits(1):
        pool = selection.pool_read(project=project)
        out["read"] = time.perf_counter() - t
        t = time.perf_counter()
        model = registry.load_model(model_version=model_version)
        scored = selection.score_pool(project, model, pool.matrix, chosen["strategy"])
        out["score"] = time.perf_counter() - t
        t = time.perf_counter()
        result = ranking.rank_pool(
            uncertainty=scored.uncertainty,
            budgets=chosen["budgets"],
            batch_size=int(chosen["batch_size"]),
            drift=pool.drift,
            features=scored.features,
            diverse=bool(chosen["diverse"]),
            exclude=(pool.reason == selection.MANUAL) | (pool.reason == selection.OTHER),
            rng=np.random.default_rng(0),
        )
        plan = selection.plan_writes(pool, result, chosen["floor"])
        out["rank"] = time.perf_counter() - t
    out["rows to write"] = float(len(plan.update))
    return out


def timed_rescore(project: Any, model_version: Any, label: str) -> float:
    from feedback import selection

    t = time.perf_counter()
    n = selection.project_rescore(project_id=project.pk, model_version_id=model_version.pk)
    seconds = time.perf_counter() - t
    print(f"  {label}: project_rescore of {n:,} samples: {seconds:.2f} s")
    return seconds


def before(project: Any, model_version: Any, rev: str) -> float:
    source = subprocess.run(
        ["git", "show", f"{rev}:feedback/selection.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType("selection_before")
    exec(compile(source, "selection_before.py", "exec"), module.__dict__)  # our own file, at a revision
    t = time.perf_counter()
    n = module.project_rescore(project_id=project.pk, model_version_id=model_version.pk)
    seconds = time.perf_counter() - t
    print(f"  before ({rev}): project_rescore of {n:,} samples: {seconds:.2f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--labeled", type=int, default=2000)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db-name", default="labelloop_bench_rescore")
    parser.add_argument("--before", action="store_true", help="also time the previous implementation")
    parser.add_argument("--before-rev", default="HEAD", help="the revision of the previous implementation")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    url = database(args.server, args.db_name, create=True)
    try:
        django_setup(url)
        from django.contrib.auth.models import User
        from django.db import connection

        from feedback.ingest import samples_ingest
        from labeling.services.projects import project_create

        user = User.objects.create_user("bench", password="bench-password-1")
        project = project_create(creator=user, name="bench", labels=LABELS, schema=SCHEMA)
        t = time.perf_counter()
        with connection.cursor() as cursor:
            step = 200_000
            for lo in range(1, args.samples + 1, step):
                hi = min(args.samples, lo + step - 1)
                for statement in FILL.strip().split(";\n"):
                    cursor.execute(statement, {"n": args.samples, "project": project.pk, "first": lo, "last": hi})
        print(f"setup: {args.samples:,} samples, tasks and scores inserted in {time.perf_counter() - t:.0f} s")
        half = args.labeled // 2
        samples_ingest(project=project, items=labeled_rows(half, 0), actor=None)
        first_model = train(project, "bench")
        samples_ingest(project=project, items=labeled_rows(args.labeled - half, half), actor=None)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        print(f"models: v{first_model.version} on {half} labels")
        print("\nphases (the same functions, one by one; nothing written):")
        for name, value in phases(project, first_model).items():
            print(f"  {name}: {value:,.2f}" if name != "rows to write" else f"  {name}: {value:,.0f}")
        if args.before:
            before(project, first_model, args.before_rev)
            with connection.cursor() as cursor:
                cursor.execute("UPDATE labeling_task SET priority = random(), reason = 'uncertainty'")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        print("\nre-scores:")
        first = timed_rescore(project, first_model, "1. first re-score (the whole queue stale)")
        second_model = train(project, "bench")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        second = timed_rescore(project, second_model, f"2. model v{second_model.version}, {args.labeled} labels")
        third = timed_rescore(project, second_model, "3. the same model again")
        print(
            f"\ngoal: <= {GOAL_SECONDS:.0f} s for 1,000,000 samples; "
            f"worst of the three here: {max(first, second, third):.2f} s"
        )
        print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    finally:
        if not args.keep:
            from django.db import connections

            connections.close_all()
            database(args.server, args.db_name, create=False)


if __name__ == "__main__":
    main()
