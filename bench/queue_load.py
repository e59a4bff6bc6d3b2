"""Benchmark: the labeling queue under many annotators, over HTTP, on PostgreSQL.

A benchmark, not a test: it prints figures beside their anchors and asserts nothing. For each
queue size (default 1,000,000 and 10,000 pending tasks) it:

1. drops and creates its own database, migrates it, creates a project (overlap 1) and
   ``--annotators`` annotator members with tokens through Django, and fills the queue with SQL
   (samples and pending tasks with random priorities: setting up is not what is measured);
2. starts gunicorn (``--workers`` x ``--threads``, gthread);
3. runs ``--annotators`` clients (threads in ``--procs`` processes, one keep-alive connection each)
   in a next -> answer loop for ``--seconds``, after a short warm-up;
4. prints p50/p99 of next and of answer, answers per second, and checks the database: no task
   leased to two people at once (overlap 1), no answer the client saw accepted missing.

    .venv/bin/python bench/queue_load.py [--sizes 1000000,10000] [--annotators 32] [--seconds 30]

(Issue 4 names it bench/queue.py; a script of that name in bench/ would shadow the standard
library's queue module for every benchmark run from there, psycopg's import included.)

Anchors (issue 4): p99 < 50 ms for next and answer, >= 500 answers/s on this 2-core machine,
latency at 1,000,000 tasks within 1.5x of that at 10,000; zero duplicate leases, zero lost answers.
For scale: a peer tool's early version took ~20 s per next-task fetch with 3,000 tasks, ~2 s per save.
"""

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GOAL_P99_MS = 50.0
GOAL_ANSWERS = 500.0
GOAL_SCALE = 1.5

SETUP = """
import json
from django.contrib.auth.models import User
from labeling.models import Role
from labeling.services.people import member_set, token_issue
from labeling.services.projects import project_create
boss = User.objects.create_user(username="boss", password="bench-password-1")
schema = {{"x": "numeric", "t": "text"}}
project = project_create(creator=boss, name="queue-bench", labels=["a", "b", "c"], schema=schema)
tokens = []
for i in range({n}):
    user = User.objects.create_user(username=f"ann{{i}}", password="bench-password-1")
    member_set(project=project, user=user, role=Role.ANNOTATOR)
    tokens.append(token_issue(user=user)[0])
print("BENCH " + json.dumps({{"project": project.pk, "tokens": tokens}}))
"""

FILL = """
INSERT INTO labeling_sample (project_id, external_id, data, created_at, status)
SELECT %(project)s, 'q' || g, jsonb_build_object('x', g, 't', 'sample number ' || g), now(), 1
FROM generate_series(1, %(n)s) AS g;
INSERT INTO labeling_task
    (project_id, sample_id, kind, reason, priority, status, overlap, n_answers, n_leased, created_at)
SELECT %(project)s, s.id, 'label', 'uncertainty', random(), 0, 1, 0, 0, now()
FROM labeling_sample s WHERE s.project_id = %(project)s;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def annotator(port: int, token: str, project: int, until: float, warm_until: float, out: list[Any]) -> None:
    """next -> answer until ``until``; records latencies after ``warm_until``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    nexts: list[float] = []
    answers: list[float] = []
    accepted: list[int] = []
    errors = 0
    while time.monotonic() < until:
        measuring = time.monotonic() >= warm_until
        t0 = time.perf_counter()
        conn.request("POST", f"/api/projects/{project}/tasks/next/", body=b"", headers=headers)
        response = conn.getresponse()
        body = response.read()
        t1 = time.perf_counter()
        if response.status == 204:
            break
        if response.status != 200:
            errors += 1
            continue
        task = json.loads(body)["task_id"]
        conn.request(
            "POST", f"/api/tasks/{task}/annotations/", body=b'{"label": "b", "duration_ms": 900}', headers=headers
        )
        response = conn.getresponse()
        response.read()
        t2 = time.perf_counter()
        if response.status == 201:
            accepted.append(task)
        else:
            errors += 1
        if measuring:
            nexts.append((t1 - t0) * 1000)
            answers.append((t2 - t1) * 1000)
    out.append((nexts, answers, accepted, errors))


def client_process(
    port: int, tokens: list[str], project: int, start_at: float, warm: float, seconds: float, queue: "mp.Queue[Any]"
) -> None:
    while time.time() < start_at:
        time.sleep(0.001)
    now = time.monotonic()
    warm_until, until = now + warm, now + warm + seconds
    out: list[Any] = []
    threads = [threading.Thread(target=annotator, args=(port, t, project, until, warm_until, out)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(out)


def run_size(args: argparse.Namespace, size: int) -> dict[str, Any]:
    database = f"{args.db_name}_{size}"
    admin = psycopg.connect(f"{args.server}/postgres", autocommit=True)
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    var = tempfile.mkdtemp(prefix="labelloop-bench-queue-")
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.server}/{database}",
        "SECRET_KEY": "bench-only",
        "DEBUG": "0",
        "LABELLOOP_VAR_DIR": var,
        "CELERY_BROKER_URL": "memory://",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    server = None
    try:
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        setup = subprocess.run(
            [PYTHON, "manage.py", "shell", "-c", SETUP.format(n=args.annotators)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        info = json.loads(next(line for line in setup.stdout.splitlines() if line.startswith("BENCH "))[6:])
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            t0 = time.monotonic()
            with conn.transaction():
                for statement in FILL.strip().split(";\n"):
                    conn.execute(statement, {"project": info["project"], "n": size})
            conn.execute("VACUUM ANALYZE")
            fill_seconds = time.monotonic() - t0
        port = free_port()
        server = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "labelloop.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--threads",
                str(args.threads),
                "--worker-class",
                "gthread",
                "--no-control-socket",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        tokens = info["tokens"]
        groups = [tokens[i :: args.procs] for i in range(args.procs)]
        queue: mp.Queue[Any] = mp.Queue()
        start_at = time.time() + 1.0
        procs = [
            mp.Process(target=client_process, args=(port, g, info["project"], start_at, args.warm, args.seconds, queue))
            for g in groups
        ]
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        nexts = [x for r in results for (n, _, _, _) in r for x in n]
        answers = [x for r in results for (_, a, _, _) in r for x in a]
        accepted = [t for r in results for (_, _, acc, _) in r for t in acc]
        errors = sum(e for r in results for (_, _, _, e) in r)
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            stored = conn.execute("SELECT count(*) FROM labeling_annotation").fetchone()[0]  # type: ignore[index]
            doubled = conn.execute(
                "SELECT count(*) FROM (SELECT task_id FROM labeling_lease WHERE status IN (0, 1) "
                "GROUP BY task_id HAVING count(*) > 1) d"
            ).fetchone()[0]  # type: ignore[index]
            twice = conn.execute(
                "SELECT count(*) FROM (SELECT task_id FROM labeling_annotation GROUP BY task_id HAVING count(*) > 1) d"
            ).fetchone()[0]  # type: ignore[index]
        lost = len(set(accepted)) - stored if stored <= len(set(accepted)) else 0
        return {
            "size": size,
            "fill_s": fill_seconds,
            "next_p50": percentile(nexts, 0.5),
            "next_p99": percentile(nexts, 0.99),
            "answer_p50": percentile(answers, 0.5),
            "answer_p99": percentile(answers, 0.99),
            "answers_per_s": len(answers) / args.seconds,
            "measured": len(answers),
            "errors": errors,
            "duplicate_leases": doubled + twice,
            "lost_answers": lost,
            "accepted": len(accepted),
            "stored": stored,
        }
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000", help="queue sizes to measure, comma-separated")
    parser.add_argument("--annotators", type=int, default=32)
    parser.add_argument("--procs", type=int, default=4, help="client processes (threads split among them)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per size")
    parser.add_argument("--warm", type=float, default=5.0, help="warm-up seconds before measuring")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db-name", default="labelloop_bench_queue")
    args = parser.parse_args()
    rows = [run_size(args, int(size)) for size in args.sizes.split(",")]
    print(
        f"\n{args.annotators} annotators ({args.procs} client processes) x next->answer for {args.seconds:.0f} s;"
        f" gunicorn {args.workers} workers x {args.threads} threads; overlap 1\n"
    )
    print(
        "| pending tasks | next p50 | next p99 | answer p50 | answer p99 | answers/s "
        "| duplicate leases | lost answers | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']:,} | {r['next_p50']:.1f} ms | {r['next_p99']:.1f} ms | {r['answer_p50']:.1f} ms | "
            f"{r['answer_p99']:.1f} ms | {r['answers_per_s']:.0f} | {r['duplicate_leases']} | "
            f"{r['lost_answers']} | {r['errors']} |"
        )
    print(f"| anchor | | < {GOAL_P99_MS:.0f} ms | | < {GOAL_P99_MS:.0f} ms | >= {GOAL_ANSWERS:.0f} | 0 | 0 | |")
    by_size = {r["size"]: r for r in rows}
    if len(by_size) >= 2:
        big, small = by_size[max(by_size)], by_size[min(by_size)]
        for key in ("next_p99", "answer_p99", "next_p50", "answer_p50"):
            print(
                f"{key}: {big[key] / small[key]:.2f}x at {big['size']:,} vs {small['size']:,} (anchor <= {GOAL_SCALE}x)"
            )


if __name__ == "__main__":
    main()
