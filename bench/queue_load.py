"""Benchmark: the labeling queue under many annotators, over HTTP, on PostgreSQL.

A benchmark, not a test: it prints figures beside their anchors and asserts nothing. For each
queue size (default 1,000,000 and 10,000 pending tasks) it:

1. drops and creates its own database (``--db-name``_<size>), migrates it, creates a project
   (overlap ``--overlap``) and ``--annotators`` annotator members with tokens through Django, and
   fills the queue with SQL (samples and pending tasks with random priorities, and the queue's
   counters: setting up is not what is measured). ``--reuse`` takes a database kept by an earlier
   ``--keep`` run instead and puts its queue back as it was filled;
2. starts gunicorn (``--workers`` x ``--threads``, gthread, the app preloaded before the fork) and
   waits until every worker answers;
3. runs ``--annotators`` clients (threads in ``--procs`` processes, one keep-alive connection each)
   in a next -> answer loop for ``--seconds``, after ``--warm`` seconds of warm-up;
4. prints p50/p99 of next and of answer, answers per second, the CPU each part spent per answer
   (gunicorn workers, PostgreSQL backends, clients; read from /proc, so with a local server), and
   checks the database: no task leased to more holders than its overlap, no task answered twice by
   one person, every answer a client saw accepted stored, and the counters equal to real counts.

    .venv/bin/python bench/queue_load.py [--sizes 1000000,10000] [--annotators 32] [--seconds 30]
    .venv/bin/python bench/queue_load.py --sizes 10000 --keep          # then, faster, again and again:
    .venv/bin/python bench/queue_load.py --sizes 10000 --reuse --py-spy 10   # with a profile of the workers

(Issue 4 names it bench/queue.py; a script of that name in bench/ would shadow the standard
library's queue module for every benchmark run from there, psycopg's and multiprocessing's imports
included.)

Anchors (issue 4): p99 < 50 ms for next and answer, >= 500 answers/s on this 2-core machine,
latency at 1,000,000 tasks within 1.5x of that at 10,000; zero duplicate leases, zero lost answers.
For scale: a peer tool's early version took ~20 s per next-task fetch with 3,000 tasks, ~2 s per save.
"""

import argparse
import collections
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TICKS = os.sysconf("SC_CLK_TCK")
GOAL_P99_MS = 50.0
GOAL_ANSWERS = 500.0
GOAL_SCALE = 1.5
SHARDS = 32  # labeling.models.ProjectCounter.SHARDS

SETUP = """
import json
from django.contrib.auth.models import User
from labeling.models import Role
from labeling.services.people import member_set, token_issue
from labeling.services.projects import project_create
boss = User.objects.create_user(username="boss", password="bench-password-1")
schema = {{"x": "numeric", "t": "text"}}
project = project_create(creator=boss, name="queue-bench", labels=["a", "b", "c"], schema=schema, overlap={overlap})
tokens = []
for i in range({n}):
    user = User.objects.create_user(username=f"ann{{i}}", password="bench-password-1")
    member_set(project=project, user=user, role=Role.ANNOTATOR)
    tokens.append(token_issue(user=user)[0])
print("BENCH " + json.dumps({{"project": project.pk, "tokens": tokens}}))
"""

# Samples and their pending tasks as ingest would make them (status queued, one task each), and
# the counters ingest keeps beside them.
FILL = """
INSERT INTO labeling_sample (project_id, external_id, data, created_at, status)
SELECT %(project)s, 'q' || g, jsonb_build_object('x', g, 't', 'sample number ' || g), now(), 1
FROM generate_series(1, %(n)s) AS g;
INSERT INTO labeling_task
    (project_id, sample_id, kind, reason, priority, status, overlap, n_answers, n_leased, created_at)
SELECT %(project)s, s.id, 'label', 'uncertainty', random(), 0, %(overlap)s, 0, 0, now()
FROM labeling_sample s WHERE s.project_id = %(project)s;
CREATE TABLE bench_info (info jsonb NOT NULL);
INSERT INTO bench_info VALUES (%(info)s::jsonb)
"""

# Back to the state FILL left (for --reuse): every task pending and unanswered, nothing labeled.
RESET = """
TRUNCATE labeling_annotation, labeling_lease, labeling_label, labeling_labelchange;
UPDATE labeling_task SET status = 0, n_answers = 0, n_leased = 0, lease_expiry = NULL
WHERE status <> 0 OR n_answers <> 0 OR n_leased <> 0;
UPDATE labeling_sample SET status = 1 WHERE status <> 1;
DELETE FROM labeling_projectcounter
"""

COUNTERS = """
INSERT INTO labeling_projectcounter (project_id, name, shard, value)
SELECT %(project)s, name, 0, n FROM (VALUES
    ('samples', (SELECT count(*) FROM labeling_sample WHERE project_id = %(project)s)),
    ('queued.label', (SELECT count(*) FROM labeling_task WHERE project_id = %(project)s AND status = 0))
) AS c(name, n)
"""

CHECKS = {
    # More live-or-answered leases on a task than its overlap: a slot handed out twice.
    "overleased": """SELECT count(*) FROM (SELECT l.task_id FROM labeling_lease l
        JOIN labeling_task t ON t.id = l.task_id WHERE l.status IN (0, 1)
        GROUP BY l.task_id, t.overlap HAVING count(*) > t.overlap) d""",
    "answered_twice": """SELECT count(*) FROM (SELECT task_id FROM labeling_annotation
        GROUP BY task_id, user_id HAVING count(*) > 1) d""",
    "over_answered": """SELECT count(*) FROM (SELECT a.task_id FROM labeling_annotation a
        JOIN labeling_task t ON t.id = a.task_id GROUP BY a.task_id, t.overlap HAVING count(*) > t.overlap) d""",
    "stored": "SELECT count(*) FROM labeling_annotation",
    "labels": "SELECT count(*) FROM labeling_label",
    "pending": "SELECT count(*) FROM labeling_task WHERE status = 0",
    "queued_counter": "SELECT coalesce(sum(value), 0) FROM labeling_projectcounter WHERE name LIKE 'queued.%%'",
    "labeled_counter": "SELECT coalesce(sum(value), 0) FROM labeling_projectcounter WHERE name = 'labeled'",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a local process so far, children it waited for excluded (0 when gone)."""
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


def backends(conn: psycopg.Connection[Any], database: str) -> list[int]:
    query = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    return [pid for (pid,) in conn.execute(query, (database,)).fetchall()]


def exchange(sock: socket.socket, request: bytes, buffer: bytearray) -> tuple[int, bytes]:
    """Send one HTTP/1.1 request on a keep-alive socket and read its response: (status, body).
    A minimal client (requests built once, Content-Length read from the head), so that the
    clients, which share the 2 cores with the server, cost as little CPU as they can."""
    sock.sendall(request)
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    at = head.find(b"\r\ncontent-length:")
    length = 0
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop > 0 else len(head)])
    while len(buffer) < end + 4 + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    body = bytes(buffer[end + 4 : end + 4 + length])
    del buffer[: end + 4 + length]
    return status, body


def annotator(
    port: int, token: str, project: int, until: float, warm_until: float, period: float, out: list[Any]
) -> None:
    """next -> answer until ``until``; records latencies after ``warm_until``. With a ``period``
    (seconds), one cycle starts every period at most (an annotator reading the sample before
    answering), from a random phase; a late cycle starts at once, and the schedule restarts
    from it rather than bursting to catch up."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = f"Host: 127.0.0.1:{port}\r\nAuthorization: Token {token}\r\nContent-Type: application/json\r\n"
    next_request = f"POST /api/projects/{project}/tasks/next/ HTTP/1.1\r\n{headers}Content-Length: 0\r\n\r\n".encode()
    answer_body = b'{"label": "b", "duration_ms": 900}'
    answer_head = f"{headers}Content-Length: {len(answer_body)}\r\n\r\n".encode() + answer_body
    buffer = bytearray()
    nexts: list[float] = []
    answers: list[float] = []
    accepted: list[int] = []
    errors: collections.Counter[str] = collections.Counter()
    due = time.monotonic() + random.random() * period
    while time.monotonic() < until:
        if period:
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            due = max(due, time.monotonic() - period) + period
        measuring = time.monotonic() >= warm_until
        t0 = time.perf_counter()
        status, body = exchange(sock, next_request, buffer)
        t1 = time.perf_counter()
        if status == 204:  # the queue ran dry: the figures cover less than --seconds (see "drained")
            errors["next 204 (queue empty)"] += 1
            break
        if status != 200:
            errors[f"next {status}"] += 1
            continue
        task = orjson.loads(body)["task_id"]
        status, _ = exchange(sock, b"POST /api/tasks/%d/annotations/ HTTP/1.1\r\n" % task + answer_head, buffer)
        t2 = time.perf_counter()
        if status == 201:
            accepted.append(task)
        else:
            errors[f"answer {status}"] += 1
        if measuring:
            nexts.append((t1 - t0) * 1000)
            answers.append((t2 - t1) * 1000)
    sock.close()
    out.append((nexts, answers, accepted, dict(errors)))


def client_process(
    port: int,
    tokens: list[str],
    project: int,
    start_at: float,
    warm: float,
    seconds: float,
    period: float,
    queue: "mp.Queue[Any]",
) -> None:
    while time.time() < start_at:
        time.sleep(0.001)
    now = time.monotonic()
    warm_until, until = now + warm, now + warm + seconds
    out: list[Any] = []
    threads = [
        threading.Thread(target=annotator, args=(port, t, project, until, warm_until, period, out)) for t in tokens
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((out, time.process_time()))


def prepare(args: argparse.Namespace, size: int, env: dict[str, str], database: str) -> dict[str, Any]:
    """Create, migrate and fill the database (or reset a kept one); the project id and tokens."""
    with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if args.reuse and exists:
            with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
                row = conn.execute("SELECT info FROM bench_info").fetchone()
                assert row is not None
                info: dict[str, Any] = row[0]
                if info.get("size") == size and info.get("overlap") == args.overlap:
                    t0 = time.monotonic()
                    with conn.transaction():
                        for statement in RESET.strip().split(";\n"):
                            conn.execute(statement)
                        conn.execute(COUNTERS, {"project": info["project"]})
                    conn.execute("VACUUM ANALYZE")
                    conn.execute("CHECKPOINT")  # see below
                    info["fill_s"] = time.monotonic() - t0
                    return info
            print(f"{database} was filled otherwise: making it again", file=sys.stderr)
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    setup = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", SETUP.format(n=args.annotators, overlap=args.overlap)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    info = json.loads(next(line for line in setup.stdout.splitlines() if line.startswith("BENCH "))[6:])
    info.update(size=size, overlap=args.overlap)
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        t0 = time.monotonic()
        with conn.transaction():
            params = {"project": info["project"], "n": size, "overlap": args.overlap, "info": json.dumps(info)}
            for statement in FILL.strip().split(";\n"):
                conn.execute(statement, params)
            conn.execute("DELETE FROM labeling_projectcounter WHERE project_id = %s", (info["project"],))
            conn.execute(COUNTERS, {"project": info["project"]})
        conn.execute("VACUUM ANALYZE")
        # The filling's dirty pages written out now, not by the backends and the checkpointer
        # while the run is measured (setting up is not what is measured).
        conn.execute("CHECKPOINT")
        info["fill_s"] = time.monotonic() - t0
    return info


def start_server(args: argparse.Namespace, env: dict[str, str], port: int) -> "subprocess.Popen[bytes]":
    command = [
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
        "--backlog",
        "2048",
        "--keep-alive",
        "30",
        "--no-control-socket",
        "--log-level",
        "warning",
    ]
    if args.preload:
        # Loaded once before the fork: workers start in milliseconds and share the app's pages.
        command.append("--preload")
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)


def wait_until_ready(port: int, token: str, project: int, server: "subprocess.Popen[bytes]", workers: int) -> None:
    """Until the server answers, then until every worker has answered a few requests (each opens
    its database connection on its first one)."""
    deadline = time.monotonic() + 180
    path = f"/api/projects/{project}/"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("gunicorn exited before answering")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", path, headers={"Authorization": f"Token {token}"})
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        time.sleep(0.3)
    else:
        raise SystemExit("gunicorn did not answer within 180 s")

    def hit() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(5):
            conn.request("GET", path, headers={"Authorization": f"Token {token}"})
            conn.getresponse().read()
        conn.close()

    threads = [threading.Thread(target=hit) for _ in range(4 * workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def profile_summary(raw: Path, top: int = 30) -> list[str]:
    """Frames by inclusive share of the samples (py-spy's raw format: one stack and count a line)."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            if not where or where.startswith(("threading.py", "concurrent/", "gunicorn/", "<frozen")):
                continue
            key = f"{name} ({where.rstrip(')').rsplit(':', 1)[0]})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
    return [f"{100 * n / max(total, 1):5.1f}%  {key}" for key, n in inclusive.most_common(top)]


def run_size(args: argparse.Namespace, size: int) -> dict[str, Any]:
    database = f"{args.db_name}_{size}"
    var = tempfile.mkdtemp(prefix="labelloop-bench-queue-")
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.server}/{database}",
        "SECRET_KEY": "bench-only",
        "DEBUG": "0",
        "LABELLOOP_VAR_DIR": var,
        "CELERY_BROKER_URL": "memory://localhost/",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    server = None
    try:
        info = prepare(args, size, env, database)
        port = free_port()
        server = start_server(args, env, port)
        tokens = info["tokens"][: args.annotators]
        wait_until_ready(port, tokens[0], info["project"], server, args.workers)
        workers = children(server.pid)
        groups = [tokens[i :: args.procs] for i in range(args.procs)]
        period = len(tokens) / args.rate if args.rate > 0 else 0.0  # each client's share of the rate
        queue: mp.Queue[Any] = mp.Queue()
        start_at = time.time() + 1.0
        procs = [
            mp.Process(
                target=client_process,
                args=(port, g, info["project"], start_at, args.warm, args.seconds, period, queue),
            )
            for g in groups
        ]
        for p in procs:
            p.start()
        monitor = psycopg.connect(env["DATABASE_URL"], autocommit=True)
        time.sleep(max(0.0, start_at - time.time()) + args.warm)
        # The measured window: CPU of the workers and of the database's backends over it.
        pg_pids = backends(monitor, database)
        cpu_before = {pid: cpu_seconds(pid) for pid in [*workers, *pg_pids]}
        load_before = os.getloadavg()[0]
        spy = None
        raw = Path(var) / "py-spy.txt"
        if args.py_spy:
            spy = subprocess.Popen(
                [
                    str(Path(PYTHON).with_name("py-spy")),
                    "record",
                    "--pid",
                    str(server.pid),
                    "--subprocesses",
                    "--duration",
                    str(args.py_spy),
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        time.sleep(args.seconds)
        cpu_after = {pid: cpu_seconds(pid) for pid in cpu_before}
        load_after = os.getloadavg()[0]
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        if spy is not None:
            spy.wait(timeout=args.py_spy + 60)
        web_cpu = sum(cpu_after[pid] - cpu_before[pid] for pid in workers)
        db_cpu = sum(cpu_after[pid] - cpu_before[pid] for pid in pg_pids)
        client_cpu = sum(cpu for _, cpu in results)  # whole run of the clients, warm-up included
        outs = [o for out, _ in results for o in out]
        nexts = [x for (n, _, _, _) in outs for x in n]
        answers = [x for (_, a, _, _) in outs for x in a]
        accepted = [t for (_, _, acc, _) in outs for t in acc]
        errors: collections.Counter[str] = collections.Counter()
        for *_, e in outs:
            errors.update(e)
        found = {name: monitor.execute(query).fetchone()[0] for name, query in CHECKS.items()}  # type: ignore[index]
        monitor.close()
        # Every accepted answer is a stored annotation: count the stored ones among the accepted.
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            kept = conn.execute(
                "SELECT count(DISTINCT task_id) FROM labeling_annotation WHERE task_id = ANY(%s)",
                (list(set(accepted)),),
            ).fetchone()[0]  # type: ignore[index]
        n = max(len(answers), 1)
        total_answers = len(accepted)
        return {
            "size": size,
            "fill_s": info["fill_s"],
            "next_p50": percentile(nexts, 0.5),
            "next_p99": percentile(nexts, 0.99),
            "answer_p50": percentile(answers, 0.5),
            "answer_p99": percentile(answers, 0.99),
            "tails": {q: (percentile(nexts, q), percentile(answers, q)) for q in (0.9, 0.95, 0.999, 1.0)},
            "answers_per_s": len(answers) / args.seconds,
            "measured": len(answers),
            "errors": dict(errors),
            "duplicate_leases": found["overleased"] + found["answered_twice"] + found["over_answered"],
            "lost_answers": len(set(accepted)) - kept,
            "counters_ok": found["queued_counter"] == found["pending"] and found["labeled_counter"] == found["labels"],
            "found": found,
            "web_ms": 1000 * web_cpu / n,
            "db_ms": 1000 * db_cpu / n,
            "client_ms": 1000 * client_cpu / max(total_answers, 1),
            "load": (load_before, load_after),
            "profile": profile_summary(raw) if spy is not None and raw.exists() else [],
        }
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        if not args.keep:
            with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        shutil.rmtree(var, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000", help="queue sizes to measure, comma-separated")
    parser.add_argument("--annotators", type=int, default=32)
    parser.add_argument("--overlap", type=int, default=1, help="answers wanted per task")
    parser.add_argument("--procs", type=int, default=4, help="client processes (threads split among them)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per size")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="answers/s the clients offer together (paced cycles); 0: each as fast as it can (saturation)",
    )
    parser.add_argument("--warm", type=float, default=5.0, help="warm-up seconds before measuring")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (2 cores)")
    parser.add_argument("--threads", type=int, default=16, help="threads per gunicorn worker")
    parser.add_argument("--no-preload", dest="preload", action="store_false", help="load the app in each worker")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db-name", default="labelloop_bench_queue")
    parser.add_argument("--keep", action="store_true", help="keep the databases for --reuse")
    parser.add_argument("--reuse", action="store_true", help="reuse databases kept by --keep (reset, not refilled)")
    parser.add_argument("--py-spy", type=int, default=0, metavar="SECONDS", help="profile the workers this long")
    args = parser.parse_args()
    rows = []
    for size in args.sizes.split(","):
        rows.append(run_size(args, int(size)))
        if rows[-1]["profile"]:
            print(f"\npy-spy, gunicorn workers at {int(size):,} tasks (inclusive share of samples):", flush=True)
            print("\n".join(rows[-1]["profile"]), flush=True)
    print(
        f"\n{args.annotators} annotators ({args.procs} client processes) x next->answer for {args.seconds:.0f} s;"
        f" gunicorn {args.workers} workers x {args.threads} threads{' (preloaded)' if args.preload else ''};"
        f" overlap {args.overlap}; {os.cpu_count()} CPUs shared by clients, server and PostgreSQL;"
        f" {f'offered {args.rate:.0f} answers/s' if args.rate > 0 else 'no pause between cycles (saturation)'}\n"
    )
    print(
        "| pending tasks | next p50 | next p99 | answer p50 | answer p99 | answers/s | duplicate leases "
        "| lost answers | counters = counts | CPU per answer: gunicorn / PostgreSQL / clients | load 1 min |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']:,} | {r['next_p50']:.1f} ms | {r['next_p99']:.1f} ms | {r['answer_p50']:.1f} ms | "
            f"{r['answer_p99']:.1f} ms | {r['answers_per_s']:.0f} | {r['duplicate_leases']} | "
            f"{r['lost_answers']} | {'yes' if r['counters_ok'] else 'NO'} | "
            f"{r['web_ms']:.2f} / {r['db_ms']:.2f} / {r['client_ms']:.2f} ms | "
            f"{r['load'][0]:.1f} -> {r['load'][1]:.1f} |"
        )
    print(f"| anchor | | < {GOAL_P99_MS:.0f} ms | | < {GOAL_P99_MS:.0f} ms | >= {GOAL_ANSWERS:.0f} | 0 | 0 | | | |")
    for r in rows:
        tails = ", ".join(f"p{100 * q:g} {n:.1f} / {a:.1f}" for q, (n, a) in r["tails"].items())
        print(f"{r['size']:,}: next / answer {tails} ms")
    for r in rows:
        if r["errors"] or not r["counters_ok"]:
            print(f"{r['size']:,}: errors {r['errors']}; database {r['found']}")
    by_size = {r["size"]: r for r in rows}
    if len(by_size) >= 2:
        big, small = by_size[max(by_size)], by_size[min(by_size)]
        for key in ("next_p50", "next_p99", "answer_p50", "answer_p99"):
            print(
                f"{key}: {big[key] / small[key]:.2f}x at {big['size']:,} vs {small['size']:,} (anchor <= {GOAL_SCALE}x)"
            )


if __name__ == "__main__":
    main()
