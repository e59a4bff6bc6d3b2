"""Benchmark: samples/second through the HTTP ingest endpoint into PostgreSQL, next to raw COPY.

A benchmark, not a test: it prints figures beside their anchors and asserts nothing. One run:

1. drops and creates its own database (``--db-name``), migrates it, and creates a user, a token and
   a project (7 data fields: numeric, categorical and text; 4 labels) through Django;
2. starts gunicorn (``--workers`` x ``--threads``, gthread) on that database;
3. sends ``--samples`` samples as NDJSON batches of ``--batch`` from ``--clients`` client processes
   (keep-alive connections, bodies built before the clock starts), each sample with its 7 fields,
   production probabilities, model_version and observed_at;
4. COPYs the same rows with psycopg 3 into a plain table of the sample table's columns (no index,
   no constraint), with the same clients and batches, one transaction per batch;
5. prints both rates, their ratio, and the anchors; stops gunicorn and drops the database.

    .venv/bin/python bench/ingest.py [--samples 100000] [--batch 2000] [--clients 4] [--workers 3]

Needs a PostgreSQL server (``--server``, default postgres://postgres@127.0.0.1:5432) whose user may
create databases. Compare figures within one run: the machine is shared.
"""

import sys
from pathlib import Path

# Run as bench/ingest.py, this folder comes first on sys.path, and its queue.py (the queue
# benchmark) would shadow the standard library's queue module, which psycopg and multiprocessing
# import. Dropping the folder is harmless: this script imports nothing from it.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LABELS = ["approve", "review", "decline", "escalate"]
SCHEMA = {
    "amount": "numeric",
    "age_days": "numeric",
    "risk": "numeric",
    "country": "categorical",
    "device": "categorical",
    "channel": "categorical",
    "comment": "text",
}
COUNTRIES = ["FR", "DE", "US", "GB", "ES", "IT", "NL", "PL", "SE", "JP"]
DEVICES = ["ios", "android", "web", "pos"]
CHANNELS = ["app", "site", "phone", "partner", "store"]
WORDS = ["the", "order", "arrived", "late", "and", "card", "was", "declined", "twice", "support", "answered", "my"]

TICKS = os.sysconf("SC_CLK_TCK")
GOAL_RATE = 20_000.0
GOAL_RATIO = 1 / 3
PEER_RATE = 100_000 / (40 * 60)  # a peer tool's users: 100k samples in ~40 minutes

SETUP = """
import json
from django.contrib.auth.models import User
from labeling.services.people import token_issue
from labeling.services.projects import project_create
user = User.objects.create_user(username="bench", password="bench-password-1")
project = project_create(creator=user, name="bench", labels={labels}, schema={schema})
key, _ = token_issue(user=user)
print("BENCH " + json.dumps({{"token": key, "project": project.pk}}))
"""

COUNTS = """
SELECT (SELECT count(*) FROM labeling_sample), (SELECT count(*) FROM labeling_task),
       (SELECT count(*) FROM feedback_samplescore), (SELECT count(*) FROM labeling_label),
       (SELECT count(*) FROM labeling_labelchange)
"""


def make_rows(n: int, seed: int = 7, labeled: float = 0.0) -> list[dict[str, Any]]:
    """``labeled``: the share of samples sent with a known true label (seed data), spread evenly."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        weights = [rng.random() for _ in LABELS]
        total = sum(weights)
        probabilities = {label: round(w / total, 6) for label, w in zip(LABELS, weights, strict=True)}
        rows.append(
            {
                "external_id": f"evt-{i:09d}",
                "data": {
                    "amount": round(rng.lognormvariate(3, 1), 2),
                    "age_days": rng.randint(0, 3650),
                    "risk": round(rng.random(), 4),
                    "country": rng.choice(COUNTRIES),
                    "device": rng.choice(DEVICES),
                    "channel": rng.choice(CHANNELS),
                    "comment": " ".join(rng.choices(WORDS, k=rng.randint(3, 12))),
                },
                "prediction": {
                    "label": max(probabilities.items(), key=lambda kv: kv[1])[0],
                    "probabilities": probabilities,
                },
                "model_version": "prod-2026.11",
                "observed_at": (start + timedelta(seconds=i)).isoformat(),
            }
        )
        if int((i + 1) * labeled) > int(i * labeled):
            rows[-1]["label"] = rng.choice(LABELS)
    return rows


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def deal(batches: list[Any], clients: int) -> list[list[Any]]:
    """Round-robin the batches over the clients, so each sends about the same amount."""
    return [batches[c::clients] for c in range(clients)]


@dataclass
class ClientResult:
    seconds: list[float]
    created: int
    duplicates: int
    rejected: int
    errors: list[str]
    cpu: float = 0.0  # this client process
    server_cpu: float = 0.0  # its PostgreSQL backend (COPY clients only)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a local process so far (0 when it is gone or not readable)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]
    except OSError:
        return []


def backends(conn: psycopg.Connection[Any], database: str) -> dict[int, float]:
    """CPU so far of the database's other backends, by pid (PostgreSQL must run on this machine)."""
    query = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    return {pid: cpu_seconds(pid) for (pid,) in conn.execute(query, (database,)).fetchall()}


def http_client(
    port: int, path: str, token: str, bodies: list[bytes], barrier: Any, out: "mp.Queue[ClientResult]"
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/x-ndjson"}
    result = ClientResult([], 0, 0, 0, [])
    barrier.wait()
    cpu_at_start = time.process_time()
    for body in bodies:
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            result.errors.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            continue
        result.seconds.append(time.perf_counter() - started)
        if response.status != 200:
            result.errors.append(f"{response.status}: {payload[:200]!r}")
            continue
        answer = orjson.loads(payload)
        result.created += answer["created"]
        result.duplicates += answer["duplicates"]
        result.rejected += len(answer["rejected"])
    conn.close()
    result.cpu = time.process_time() - cpu_at_start
    out.put(result)


def copy_client(dsn: str, table: str, batches: list[list[tuple[Any, ...]]], barrier: Any, out: "mp.Queue[Any]") -> None:
    seconds = []
    with psycopg.connect(dsn) as conn:
        backend = conn.info.backend_pid
        barrier.wait()
        cpu_at_start, server_cpu_at_start = time.process_time(), cpu_seconds(backend)
        statement = sql.SQL(
            "COPY {} (project_id, external_id, data, observed_at, created_at, status, suggestion) FROM STDIN"
        ).format(sql.Identifier(table))
        for batch in batches:
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
                for row in batch:
                    copy.write_row(row)
            seconds.append(time.perf_counter() - started)
        cpu, server_cpu = time.process_time() - cpu_at_start, cpu_seconds(backend) - server_cpu_at_start
    out.put(ClientResult(seconds, sum(len(b) for b in batches), 0, 0, [], cpu, server_cpu))


def run_clients(target: Any, per_client: list[tuple[Any, ...]]) -> tuple[float, list[ClientResult]]:
    """Start one process per argument tuple, release them together, return wall time and results."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(len(per_client) + 1)
    out: mp.Queue[ClientResult] = ctx.Queue()
    processes = [ctx.Process(target=target, args=(*args, barrier, out)) for args in per_client]
    for process in processes:
        process.start()
    barrier.wait()
    started = time.perf_counter()
    results = [out.get() for _ in processes]
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join()
    return elapsed, results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(port: int, token: str, project: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("gunicorn exited before answering")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", f"/api/projects/{project}/", headers={"Authorization": f"Token {token}"})
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("gunicorn did not answer within 60 s")


def warm_up(port: int, token: str, project: int, connections: int) -> None:
    """Let every worker import the views and open its database connection before the clock starts:
    a long-running server has done that long before; the first request to a worker has not."""
    path = f"/api/projects/{project}/samples/?page_size=1"

    def hit() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(3):
            conn.request("GET", path, headers={"Authorization": f"Token {token}"})
            conn.getresponse().read()
        conn.close()

    threads = [threading.Thread(target=hit) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--labeled", type=float, default=0.0, help="share of samples sent with a label (0..1)")
    parser.add_argument("--copy-runs", type=int, default=3, help="raw COPY runs (the median is shown)")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--db-name", default="labelloop_bench_ingest")
    parser.add_argument("--keep", action="store_true", help="keep the database (and print its URL) afterwards")
    parser.add_argument("--hold", action="store_true", help="wait for Enter before sending (to attach a profiler)")
    args = parser.parse_args()

    admin_dsn = f"{args.server}/postgres"
    dsn = f"{args.server}/{args.db_name}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db_name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.db_name)))

    var_dir = tempfile.mkdtemp(prefix="labelloop_bench_ingest_")
    (Path(var_dir) / "static").mkdir()  # whitenoise warns at every worker start without it
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "SECRET_KEY": "bench-only-secret",
        "DEBUG": "0",
        "LABELLOOP_VAR_DIR": var_dir,
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "labelloop.settings",
    }
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    server: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        code = SETUP.format(labels=repr(LABELS), schema=repr(SCHEMA))
        setup = subprocess.run(
            [PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if setup.returncode != 0:
            raise SystemExit(f"creating the user, token and project failed:\n{setup.stderr}")
        created = json.loads(next(line[6:] for line in setup.stdout.splitlines() if line.startswith("BENCH ")))
        token, project = created["token"], created["project"]

        rows = make_rows(args.samples, labeled=args.labeled)
        bodies = [b"\n".join(orjson.dumps(row) for row in batch) + b"\n" for batch in chunks(rows, args.batch)]
        now = datetime.now(UTC)
        copy_rows = [
            (project, row["external_id"], orjson.dumps(row["data"]).decode(), row["observed_at"], now, 1, None)
            for row in rows
        ]
        copy_batches = [list(batch) for batch in chunks(copy_rows, args.batch)]
        mb = sum(map(len, bodies)) / 1e6

        port = free_port()
        server = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "labelloop.wsgi:application",
                "--workers",
                str(args.workers),
                "--threads",
                str(args.threads),
                "--worker-class",
                "gthread",
                "--bind",
                f"127.0.0.1:{port}",
                "--timeout",
                "600",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        wait_until_up(port, token, project, server)
        warm_up(port, token, project, 2 * args.workers * args.threads)
        if args.hold:
            input(f"gunicorn is up (master pid {server.pid}); press Enter to start sending ")

        path = f"/api/projects/{project}/samples/"
        workers = children(server.pid)
        with psycopg.connect(dsn, autocommit=True) as monitor:
            workers_before = {pid: cpu_seconds(pid) for pid in workers}
            backends_before = backends(monitor, args.db_name)
            http_seconds, http_results = run_clients(
                http_client, [(port, path, token, mine) for mine in deal(bodies, args.clients)]
            )
            web_cpu = sum(cpu_seconds(pid) - before for pid, before in workers_before.items())
            backends_after = backends(monitor, args.db_name)
        http_db_cpu = sum(cpu - backends_before.get(pid, 0.0) for pid, cpu in backends_after.items())
        errors = [e for r in http_results for e in r.errors]
        stored = sum(r.created for r in http_results)
        with psycopg.connect(dsn) as conn:
            n_samples, n_tasks, n_scores, n_labels, n_changes = conn.execute(COUNTS).fetchone() or (0,) * 5
            conn.execute(
                "CREATE TABLE bench_raw_sample (id bigserial, project_id bigint, external_id varchar(255), "
                "data jsonb, observed_at timestamptz, created_at timestamptz, status smallint, suggestion jsonb)"
            )
        # COPY takes about a second: run it a few times (emptying the table between) and keep the median run.
        copy_runs = []
        for _ in range(args.copy_runs):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE bench_raw_sample")
            copy_runs.append(
                run_clients(copy_client, [(dsn, "bench_raw_sample", mine) for mine in deal(copy_batches, args.clients)])
            )
        copy_seconds, copy_results = sorted(copy_runs, key=lambda run: run[0])[len(copy_runs) // 2]
        with psycopg.connect(dsn) as conn:
            copied = (conn.execute("SELECT count(*) FROM bench_raw_sample").fetchone() or (0,))[0]
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        if not args.keep:
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db_name)))

    http_rate = stored / http_seconds
    copy_rate = copied / copy_seconds
    ratio = http_rate / copy_rate
    latencies = [s for r in http_results for s in r.seconds]
    print()
    print(
        f"ingest benchmark: {args.samples:,} samples ({mb:.1f} MB NDJSON), batches of {args.batch:,}, "
        f"{args.labeled:.0%} with a label, {args.clients} client processes; "
        f"gunicorn {args.workers} workers x {args.threads} threads (gthread); "
        f"{os.cpu_count()} CPUs shared by clients, server and PostgreSQL"
    )
    print(
        f"stored: {n_samples:,} samples, {n_tasks:,} tasks, {n_scores:,} scores, {n_labels:,} labels, "
        f"{n_changes:,} label changes; responses said created {stored:,}, "
        f"duplicates {sum(r.duplicates for r in http_results):,}, rejected {sum(r.rejected for r in http_results):,}"
    )
    if errors:
        print(f"{len(errors)} failed requests, first: {errors[0]}")
    print(
        f"request latency: median {statistics.median(latencies):.2f} s, p95 {percentile(latencies, 0.95):.2f} s"
        if latencies
        else "no request answered"
    )
    per_sample = 1e6 / args.samples
    http_client_cpu = sum(r.cpu for r in http_results)
    copy_client_cpu = sum(r.cpu for r in copy_results)
    copy_db_cpu = sum(r.server_cpu for r in copy_results)
    print(
        f"CPU per sample, HTTP ingest: gunicorn {web_cpu * per_sample:.0f} us, "
        f"PostgreSQL {http_db_cpu * per_sample:.0f} us, "
        f"clients {http_client_cpu * per_sample:.0f} us; raw COPY: PostgreSQL {copy_db_cpu * per_sample:.0f} us, "
        f"clients {copy_client_cpu * per_sample:.0f} us"
    )
    print()
    table = [
        ("", "samples/s", "x raw COPY", "wall s"),
        (
            "Labelloop HTTP ingest (this run)",
            f"{http_rate:,.0f}",
            f"{ratio:.2f}",
            f"{http_seconds:.1f}",
        ),
        (
            f"raw psycopg COPY, plain table (median of {args.copy_runs})",
            f"{copy_rate:,.0f}",
            "1.00",
            f"{copy_seconds:.1f}",
        ),
        ("project goal", f">= {GOAL_RATE:,.0f}", f">= {GOAL_RATIO:.2f}", ""),
        ("peer labeling tool (100k in ~40 min)", f"~{PEER_RATE:,.0f}", "", ""),
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}")
    if args.keep:
        print(f"\ndatabase kept: {dsn}")


if __name__ == "__main__":
    main()
