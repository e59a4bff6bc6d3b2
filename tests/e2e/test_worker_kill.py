"""A training run whose worker is killed with SIGKILL mid-run completes exactly once after a new
worker starts; and a promotion made through one gunicorn worker is served by all of them.

A system of its own (database, gunicorn with two workers, Celery workers on Redis under a key
prefix of their own, so that the session's other system never sees its messages). The first
worker runs with a test-only setting that sleeps between the run's progress steps, so that it can
be killed in the middle; the second one, started after the kill, gets the unacknowledged message
back when the broker's visibility timeout (short here) has passed, and trains it again.
"""

import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.system import (
    BIN,
    FAILURES,
    Api,
    Service,
    clean_env,
    free_port,
    fresh_database,
    is_postgres,
    poll,
    run_command,
    save_artifacts,
    token_for,
    wait_group_gone,
    wait_healthy,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not is_postgres(os.environ.get("DATABASE_URL")),
        reason="the worker-kill test runs on PostgreSQL: set DATABASE_URL to a postgres:// URL",
    ),
]

ADMIN = ("wk-admin", "wk-admin-password")
LABELS = ["cat", "dog", "bird"]
WAIT = 90.0
STEP_SLEEP = "2.5"  # seconds the first worker sleeps after each progress step (6 steps)
VISIBILITY = "6"  # seconds before the second worker takes back a message nobody acknowledged


@dataclass
class System:
    base_url: str
    env: dict[str, str]
    var_dir: Path
    services: dict[str, Service]
    admin: Api

    def start_worker(self, name: str, **extra: str) -> Service:
        service = Service.start(
            f"celery worker {name}",
            [
                str(BIN / "celery"),
                "-A",
                "labelloop",
                "worker",
                "--loglevel=info",
                "--concurrency=1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"{name}@%h",
            ],
            {**self.env, **extra},
            self.var_dir / f"worker-{name}.log",
        )
        self.services[name] = service
        return service


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    server_url = os.environ["DATABASE_URL"]
    with fresh_database(server_url, "labelloop_e2e_wk_") as url:
        yield url


@pytest.fixture(scope="module")
def system(database_url: str, e2e_broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    var_dir = tmp_path_factory.mktemp("labelloop-wk")
    port = free_port()
    env = clean_env(
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=e2e_broker_url,
        CELERY_BROKER_KEYPREFIX=f"wk-{secrets.token_hex(4)}:",
        SECRET_KEY=secrets.token_urlsafe(40),
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LABELLOOP_VAR_DIR=str(var_dir),
        CELERY_TASK_ALWAYS_EAGER="0",
        DJANGO_SUPERUSER_USERNAME=ADMIN[0],
        DJANGO_SUPERUSER_PASSWORD=ADMIN[1],
        DJANGO_SUPERUSER_EMAIL="wk-admin@example.com",
        PYTHONUNBUFFERED="1",
    )
    setup_log = var_dir / "setup.log"
    services: dict[str, Service] = {}
    try:
        run_command([str(BIN / "python"), "manage.py", "migrate", "--noinput"], env, setup_log)
        services["gunicorn"] = Service.start(
            "gunicorn",
            [
                str(BIN / "gunicorn"),
                "labelloop.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "2",
                "--control-socket",
                str(var_dir / "gunicorn.ctl"),
            ],
            env,
            var_dir / "gunicorn.log",
        )
        run_command([str(BIN / "python"), "manage.py", "createsuperuser", "--noinput"], env, setup_log)
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, list(services.values()), 90.0)
        admin = Api(base_url, token_for(base_url, *ADMIN))
        yield System(base_url, env, var_dir, services, admin)
        admin.session.close()
    finally:
        for service in reversed(list(services.values())):
            service.stop()
        if FAILURES:
            where = save_artifacts(f"e2e-{Path(database_url).name}", [setup_log, *(s.log for s in services.values())])
            sys.stderr.write(f"\ne2e: logs of the worker-kill system are in {where}\n")


def _items(n: int) -> list[dict[str, Any]]:
    weights = {"cat": 4.0, "dog": 20.0, "bird": 0.5}
    return [
        {
            "external_id": f"wk-{i}",
            "data": {"weight": weights[LABELS[i % 3]] + (i % 5) * 0.1, "colour": ["grey", "brown", "blue"][i % 3]},
            "label": LABELS[i % 3],
        }
        for i in range(n)
    ]


def _run(system: System, run_id: int) -> dict[str, Any]:
    return dict(system.admin.ok("GET", f"/api/runs/{run_id}/"))


def test_a_killed_workers_run_completes_once_on_a_new_worker(system: System) -> None:
    admin = system.admin
    project = admin.ok(
        "POST",
        "/api/projects/",
        201,
        json={
            "name": "Worker kill",
            "labels": LABELS,
            "schema": {"weight": "numeric", "colour": "categorical"},
            "retrain": {"min_new_labels": 1_000_000},  # training is started by hand here
        },
    )
    p = f"/api/projects/{project['id']}"
    assert admin.ok("POST", f"{p}/samples/", json=_items(60))["created"] == 60
    first = system.start_worker("first", LABELLOOP_TEST_TRAINING_STEP_SLEEP=STEP_SLEEP)
    run_id = admin.ok("POST", f"{p}/runs/", 202, json={})["run_id"]
    running = poll(
        "the first worker to be mid-run",
        lambda: (r := _run(system, run_id))["status"] == "running" and 0 < r["progress"] < 0.5 and r,
        WAIT,
        interval=0.2,
    )
    os.killpg(first.process.pid, signal.SIGKILL)  # the worker and its pool, without a chance to clean up
    assert wait_group_gone(first.process.pid, 10.0) == []
    first.process.wait(timeout=10)
    killed_at = time.monotonic()
    time.sleep(1.0)
    after_kill = _run(system, run_id)
    assert after_kill["status"] == "running" and after_kill["progress"] <= running["progress"] + 0.2
    assert after_kill["attempts"] == 1 and admin.ok("GET", f"{p}/models/")["count"] == 0

    system.start_worker(
        "second",
        CELERY_VISIBILITY_TIMEOUT=VISIBILITY,
        CELERY_UNACKED_RESTORE_INTERVAL="1",
        CELERY_UNACKED_RESTORE_THROTTLE="1",
    )
    done = poll(
        "the run to finish on the second worker",
        lambda: (r := _run(system, run_id))["status"] in ("succeeded", "rejected", "failed") and r,
        WAIT,
    )
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2 and done["progress"] == 1.0 and done["model_version"] == 1
    models = admin.ok("GET", f"{p}/models/")["results"]
    assert [(m["version"], m["aliases"]) for m in models] == [(1, ["champion"])]
    # A redelivery later (the second worker's own restore, a duplicate message) changes nothing.
    time.sleep(max(0.0, float(VISIBILITY) + 2 - (time.monotonic() - killed_at)))
    assert _run(system, run_id)["attempts"] == 2
    assert admin.ok("GET", f"{p}/models/")["count"] == 1
    runs = admin.ok("GET", f"{p}/runs/")["results"]
    assert [r["run_id"] for r in runs] == [run_id]

    # A second model (another config of the same version), then a promotion through one gunicorn
    # worker: every worker answers from the new champion on its next request.
    admin.ok("PATCH", f"{p}/", json={"training": {"params": {"C": 0.05}}})
    second_run = admin.ok("POST", f"{p}/runs/", 202, json={"dataset_version": 1})["run_id"]
    assert second_run != run_id
    poll("the second run", lambda: _run(system, second_run)["status"] in ("succeeded", "rejected"), WAIT)
    item: dict[str, Any] = {"items": [{"data": {"weight": 20.0, "colour": "brown"}}]}

    def predicted_versions(n: int) -> set[int]:
        seen = set()
        for _ in range(n):  # a new connection each time: gunicorn's workers take turns accepting
            response = requests.post(
                f"{system.base_url}{p}/predict/",
                json=item,
                headers={**admin.session.headers, "Connection": "close"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            seen.add(response.json()["model_version"])
        return seen

    champion = next(m["version"] for m in admin.ok("GET", f"{p}/models/")["results"] if "champion" in m["aliases"])
    assert predicted_versions(12) == {champion}  # every worker has the champion in its cache now
    other = 1 if champion == 2 else 2
    admin.ok("POST", f"{p}/models/{other}/promote/", json={"reason": "e2e: promoted through one worker"})
    assert predicted_versions(12) == {other}
