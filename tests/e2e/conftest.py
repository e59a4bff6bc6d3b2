"""Fixtures that run the real system: a fresh PostgreSQL database, migrate and createsuperuser as
commands, gunicorn and a Celery worker (no -Q) on the test broker, all as subprocesses.

The subprocesses get an environment of their own (the test process's Django settings module and
test defaults are removed from it); their logs go to a temporary directory and are copied to
test-artifacts/ when a test fails.
"""

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.system import (
    BIN,
    FAILED,
    FAILURES,
    Live,
    Service,
    clean_env,
    free_port,
    fresh_database,
    is_postgres,
    run_command,
    save_artifacts,
    wait_healthy,
)

SUPERUSER = ("e2e-admin", "e2e-admin-password")
START_TIMEOUT = 90.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember on the item which of its phases failed (fixtures read it to keep the logs)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        item.stash.setdefault(FAILED, []).append(report.when)
        FAILURES.append(item.nodeid)


@pytest.fixture(scope="session")
def e2e_database_url() -> Iterator[str]:
    """A fresh database on the server of DATABASE_URL, dropped at the end of the session."""
    server_url = os.environ.get("DATABASE_URL", "")
    if not is_postgres(server_url):
        pytest.skip("the e2e system tests need DATABASE_URL to be a PostgreSQL URL (./run-tests sets it)")
    with fresh_database(server_url, "labelloop_e2e_") as url:
        yield url


@pytest.fixture(scope="session")
def e2e_broker_url() -> str:
    """The test broker (TEST_BROKER_URL), its Redis database flushed first."""
    url = os.environ.get("TEST_BROKER_URL", "")
    if not url.startswith("redis://"):
        pytest.skip("the e2e system tests need TEST_BROKER_URL to be a redis:// URL (./run-tests sets it)")
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def live(e2e_database_url: str, e2e_broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """migrate, createsuperuser, then gunicorn and `celery -A labelloop worker` until the session ends."""
    var_dir = tmp_path_factory.mktemp("labelloop-var")
    port = free_port()
    env = clean_env(
        DATABASE_URL=e2e_database_url,
        CELERY_BROKER_URL=e2e_broker_url,
        SECRET_KEY=secrets.token_urlsafe(40),
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LABELLOOP_VAR_DIR=str(var_dir),
        CELERY_TASK_ALWAYS_EAGER="0",
        DJANGO_SUPERUSER_USERNAME=SUPERUSER[0],
        DJANGO_SUPERUSER_PASSWORD=SUPERUSER[1],
        DJANGO_SUPERUSER_EMAIL="e2e-admin@example.com",
        PYTHONUNBUFFERED="1",
    )
    setup_log = var_dir / "setup.log"
    services: dict[str, Service] = {}
    failed_to_start = False
    try:
        run_command([str(BIN / "python"), "manage.py", "migrate", "--noinput"], env, setup_log)
        services["worker"] = Service.start(
            "celery worker",
            [str(BIN / "celery"), "-A", "labelloop", "worker", "--loglevel=info", "--concurrency=2"],
            env,
            var_dir / "worker.log",
        )
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
                "4",
                "--access-logfile",
                "-",
                # Not the per-user default path, which other gunicorns on this machine share.
                "--control-socket",
                str(var_dir / "gunicorn.ctl"),
            ],
            env,
            var_dir / "gunicorn.log",
        )
        # The servers boot while the superuser is made (both are slow on a small machine).
        run_command([str(BIN / "python"), "manage.py", "createsuperuser", "--noinput"], env, setup_log)
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, list(services.values()), START_TIMEOUT)
        yield Live(base_url, e2e_database_url, e2e_broker_url, var_dir, SUPERUSER, services)
    except Exception:
        failed_to_start = True
        raise
    finally:
        for service in reversed(list(services.values())):
            service.stop()
        if failed_to_start or FAILURES:
            logs = [setup_log, *(service.log for service in services.values())]
            where = save_artifacts(f"e2e-{Path(e2e_database_url).name}", logs)
            sys.stderr.write(f"\ne2e: logs of the system under test are in {where}\n")
