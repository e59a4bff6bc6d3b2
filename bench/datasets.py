"""Benchmark: cutting a training-set version after 10,000 label changes on a 1,000,000-label set,
and exporting 1,000,000 rows as JSONL, Parquet and CSV. A benchmark, not a test: it prints figures
beside their anchors and asserts nothing.

1. drops and creates its own database (``--db-name``), migrates it, creates a project (3 numeric,
   2 categorical and 1 text field) through Django;
2. loads ``--labels`` labeled samples with COPY (samples, final labels and their LabelChange trail,
   as an import would leave them) and cuts version 1 with ``dataset_version_cut`` (timed: the first
   cut is O(set) by nature);
3. changes ``--changes`` labels through ``labels_set`` (the service reviews and consensus use: 80%
   relabeled, 20% new samples) and times the cut of version 2, counting the member rows it wrote;
4. streams version 2 through ``exports.stream`` (what the export endpoint sends) as JSONL, Parquet
   and CSV, reading every byte, and through the export view in-process (Django's test client) for
   JSONL and Parquet, with the peak RSS growth;
5. drops the database.

    .venv/bin/python bench/datasets.py [--labels 1000000] [--changes 10000] [--server postgres://postgres@127.0.0.1:5432]

Compare figures within one run: the machine is shared (the script prints the load average).
"""

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # this folder's queue.py would shadow the standard library's (see bench/ingest.py)

import argparse
import cProfile
import os
import pstats
import random
import subprocess
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LABELS = ["approve", "review", "decline", "escalate"]
SCHEMA = {
    "amount": "numeric",
    "age_days": "numeric",
    "risk": "numeric",
    "country": "categorical",
    "device": "categorical",
    "comment": "text",
}
WORDS = ["the", "order", "arrived", "late", "and", "card", "was", "declined", "twice", "support"]
GOAL_CUT_SECONDS = 2.0
GOAL_EXPORT_RATE = 100_000.0
PEER_EXPORT_RATE = 50_000 / 240  # a peer tool's users: ~4 minutes for 50,000 records
PEER_SNAPSHOT = "128,000 tasks: timed out at 180 s (< 711 rows/s)"


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def setup_database(server: str, name: str) -> str:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{server}/{name}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "labelloop.settings", "SECRET_KEY": "bench"}
    env["LABELLOOP_VAR_DIR"] = env.get("LABELLOOP_VAR_DIR", "/tmp/labelloop_reg")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    return url


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def copy_rows(conn: psycopg.Connection[Any], statement: str, rows: Iterable[tuple[Any, ...]]) -> None:
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def load_labels(url: str, project_id: int, n: int) -> None:
    """n samples with data, their final labels and their LabelChange rows, by COPY."""
    rng = random.Random(5)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with psycopg.connect(url) as conn:
        samples = (
            (
                project_id,
                f"evt-{i:09d}",
                orjson.dumps(
                    {
                        "amount": round(rng.lognormvariate(3, 1), 2),
                        "age_days": rng.randint(0, 3650),
                        "risk": round(rng.random(), 4),
                        "country": rng.choice(["FR", "DE", "US", "GB", "ES", "IT"]),
                        "device": rng.choice(["ios", "android", "web"]),
                        "comment": " ".join(rng.choices(WORDS, k=rng.randint(3, 10))),
                    }
                ).decode(),
                now,
                now,
                2,
            )
            for i in range(n)
        )
        copy_rows(
            conn,
            "COPY labeling_sample (project_id, external_id, data, observed_at, created_at, status) FROM STDIN",
            samples,
        )
        ids = [row[0] for row in conn.execute("SELECT id FROM labeling_sample ORDER BY id")]
        labels = [LABELS[i % 4] for i in range(n)]
        copy_rows(
            conn,
            "COPY labeling_label (sample_id, project_id, label, confidence, method, n_annotations, updated_at) "
            "FROM STDIN",
            ((sid, project_id, label, 1.0, "import", 0, now) for sid, label in zip(ids, labels, strict=True)),
        )
        copy_rows(
            conn,
            "COPY labeling_labelchange (project_id, sample_id, old_label, new_label, method, reason, created_at) "
            "FROM STDIN",
            ((project_id, sid, None, label, "import", "", now) for sid, label in zip(ids, labels, strict=True)),
        )
        conn.commit()
        conn.execute("ANALYZE")


def timed(label: str, work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.2f} s", flush=True)
    return seconds, result


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a local process (the PostgreSQL backend), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def drain(chunks: Iterable[bytes], backend: int | None) -> tuple[int, float, float, float]:
    """Read every chunk: (bytes, peak RSS growth in MiB, this process's CPU s, the backend's CPU s)."""
    base = rss_mib()
    peak = base
    total = 0
    server = cpu_seconds(backend) if backend else 0.0
    client = time.process_time()
    for k, chunk in enumerate(chunks):
        total += len(chunk)
        if k % 8 == 0:
            peak = max(peak, rss_mib())
    server = (cpu_seconds(backend) - server) if backend else float("nan")
    return total, peak - base, time.process_time() - client, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db-name", default="labelloop_reg_bench")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions of the timed cut")
    args = parser.parse_args()
    print(f"load average before: {load_average()}", flush=True)
    url = setup_database(args.server, args.db_name)
    os.environ.update(
        {
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "labelloop.settings",
            "SECRET_KEY": "bench",
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "LABELLOOP_VAR_DIR": os.environ.get("LABELLOOP_VAR_DIR", "/tmp/labelloop_reg"),
            "ALLOWED_HOSTS": "testserver,localhost",
        }
    )
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from feedback import datasets, exports
    from feedback.models import DatasetMember
    from labeling import events
    from labeling.models import Label, LabelMethod, Sample
    from labeling.services.labels import LabelDecision, labels_set
    from labeling.services.people import token_issue
    from labeling.services.projects import project_create

    events._labels_finalized.clear()  # no worker here: nothing may enqueue a cut-and-train
    try:
        user = User.objects.create_user(username="bench", password="bench-password-1")
        project = project_create(
            creator=user, name="bench", labels=LABELS, schema=SCHEMA, settings={"retrain": {"min_new_labels": 10**7}}
        )
        print(f"loading {args.labels:,} labeled samples (COPY) ...", flush=True)
        load_labels(url, project.pk, args.labels)
        first_seconds, first = timed(
            "cut version 1 (every label new: O(set))",
            lambda: datasets.dataset_version_cut(project_id=project.pk, trigger="bench"),
        )
        # 10,000 changes: 80% relabels of existing samples, 20% new labeled samples.
        rng = random.Random(11)
        n_new = args.changes // 5
        relabel = rng.sample(range(args.labels), args.changes - n_new)
        ids = list(Sample.objects.filter(project=project).order_by("id").values_list("id", flat=True))
        current = dict(Label.objects.filter(project=project).values_list("sample_id", "label"))
        decisions = [
            LabelDecision(ids[i], LABELS[(LABELS.index(current[ids[i]]) + 1) % 4], 1.0, LabelMethod.REVIEW, 1)
            for i in relabel
        ]
        from labeling.services.samples import NewSample, samples_add_bulk

        new_items = [
            NewSample(external_id=f"new-{i:06d}", data={"amount": 1.0, "country": "FR"}, label=LABELS[i % 4])
            for i in range(n_new)
        ]
        print(f"changing {args.changes:,} labels through labels_set / samples_add_bulk ...", flush=True)
        for start in range(0, len(decisions), 1000):
            labels_set(project_id=project.pk, decisions=decisions[start : start + 1000], actor=None)
        samples_add_bulk(project=project, items=new_items, actor=None)
        members_before = DatasetMember.objects.filter(project=project).count()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        cut_seconds, second = timed(
            f"cut version 2 after {args.changes:,} changes",
            lambda: datasets.dataset_version_cut(project_id=project.pk, trigger="bench"),
        )
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        v2 = second.version
        inserted = DatasetMember.objects.filter(project=project).count() - members_before
        closed = DatasetMember.objects.filter(project=project, valid_to=v2.version).count()
        print(f"  version 2: size {v2.size:,}, diff +{v2.n_added} ~{v2.n_changed} -{v2.n_removed}")

        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")  # what autovacuum keeps up with in a live database
            cursor.execute("SELECT pg_backend_pid()")
            backend = int(cursor.fetchone()[0])
        local = "127.0.0.1" in url or "localhost" in url
        export_rows = v2.size
        results: list[tuple[str, float, int, float, float, float]] = []
        for fmt in ("jsonl", "parquet", "csv"):

            def direct(fmt: str = fmt) -> tuple[int, float, float, float]:
                return drain(exports.stream(v2, project.fields(), fmt), backend if local else None)

            seconds, (size, peak, client_cpu, server_cpu) = timed(f"export {fmt} (exports.stream)", direct)
            results.append((f"{fmt}, exports.stream", seconds, size, peak, client_cpu, server_cpu))
        key, _ = token_issue(user=user)
        client = Client(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.get("/api/projects/").status_code == 200  # warm up: the first request imports the URLconf
        for fmt in ("jsonl", "parquet"):
            path = f"/api/projects/{project.pk}/datasets/{v2.version}/export/?format={fmt}"

            def through_view(path: str = path) -> tuple[int, float, float, float]:
                response = client.get(path)
                assert response.status_code == 200, response.status_code
                return drain(getattr(response, "streaming_content"), None)  # noqa: B009

            seconds, (size, peak, client_cpu, server_cpu) = timed(
                f"export {fmt} (the export view, in-process)", through_view
            )
            results.append((f"{fmt}, export view", seconds, size, peak, client_cpu, server_cpu))

        print(f"\nload average after: {load_average()}")
        print("\n| what | figure | anchor / goal |\n| --- | --- | --- |")
        print(f"| first cut, {first.version.size:,} labels (all new) | {first_seconds:.1f} s | (O(set) by nature) |")
        print(
            f"| cut after {args.changes:,} changes on {args.labels:,} labels | **{cut_seconds:.2f} s** | "
            f"goal < {GOAL_CUT_SECONDS:.0f} s |"
        )
        print(
            f"| member rows written by that cut | **{inserted:,} inserted + {closed:,} closed** | "
            f"O(changes): {args.changes:,} |"
        )
        for label, seconds, size, peak, client_cpu, server_cpu in results:
            cpu = f"CPU: Python {client_cpu:.1f} s" + (
                f", PostgreSQL {server_cpu:.1f} s" if server_cpu == server_cpu else ""
            )
            print(
                f"| export {export_rows:,} rows, {label} | **{export_rows / seconds:,.0f} rows/s** "
                f"({seconds:.1f} s, {size / 2**20:.0f} MiB, peak RSS +{peak:.0f} MiB; {cpu}) | "
                f"goal >= {GOAL_EXPORT_RATE:,.0f} |"
            )
        print(f"| peer tool: export 50,000 records in ~4 min | {PEER_EXPORT_RATE:,.0f} rows/s | |")
        print(f"| peer tool: snapshot of 128,000 tasks | {PEER_SNAPSHOT} | |")
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(args.server, args.db_name)


if __name__ == "__main__":
    main()
