"""The README's first command, run as a user runs it: `./quickstart` on its embedded defaults
(SQLite and the filesystem broker in its own var dir), then the demo through the API and the
annotator's web page, then Ctrl-C (SIGINT to the process group) or SIGTERM (to quickstart alone,
during start-up) must leave no process behind.
"""

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import requests

from tests.e2e.system import (
    REPO,
    clean_env,
    cmdline,
    free_port,
    item_failed,
    kill_group,
    poll,
    port_open,
    save_artifacts,
    wait_group_gone,
)

pytestmark = pytest.mark.e2e

READY = re.compile(r"Labelloop is running: (http://127\.0\.0\.1:(\d+))/")
DEMO_NAME = "Handwritten digits (demo)"
PASSWORD = "labelloop-demo"
START_DEADLINE = 240.0
STOP_DEADLINE = 30.0


@dataclass
class Quickstart:
    process: subprocess.Popen[bytes]
    port: int
    var_dir: Path
    output: Path
    handle: IO[bytes]

    @property
    def pgid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = pattern.search(self.text())
            if found:
                return found
            if self.process.poll() is not None:
                pytest.fail(f"quickstart exited {self.process.returncode} before {pattern.pattern!r}:\n{self.text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"quickstart did not print {pattern.pattern!r} within {timeout:.0f} s:\n{self.text()}")
            time.sleep(0.3)

    def assert_everything_stops(self) -> None:
        """quickstart exits, and with it every process of its group (gunicorn, its workers, the
        Celery worker and its pool, any start-up step)."""
        try:
            self.process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"quickstart still running {STOP_DEADLINE:.0f} s after the signal:\n{self.text()[-3000:]}")
        # No process of the group runs any more. (A zombie may linger a moment: an orphan's exit
        # status waits for PID 1 to collect it, which some containers' PID 1 does late.)
        left = wait_group_gone(self.pgid, STOP_DEADLINE)
        assert not left, f"processes left behind: {[cmdline(pid) for pid in left]}"
        assert not port_open(self.port), "the port still answers"


@pytest.fixture
def quickstart(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A function that starts ./quickstart in its own session, on a free port and a fresh var dir.
    Whatever is left is killed at the end; its output and logs are kept when the test failed."""
    started: list[Quickstart] = []

    def start() -> Quickstart:
        var_dir = tmp_path / f"var{len(started)}"
        var_dir.mkdir()
        output = tmp_path / f"quickstart{len(started)}.out"
        handle = output.open("wb")
        port = free_port()
        process = subprocess.Popen(
            [str(REPO / "quickstart")],
            cwd=REPO,
            env=clean_env(PORT=str(port), LABELLOOP_VAR_DIR=str(var_dir)),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        run = Quickstart(process=process, port=port, var_dir=var_dir, output=output, handle=handle)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.process.poll() is None or wait_group_gone(run.pgid, 0):
            kill_group(run.pgid)
            run.process.wait(timeout=10)
        run.handle.close()
        if item_failed(request):
            logs = [run.output, *(run.var_dir / name for name in ("worker.log", "gunicorn.log", "access.log"))]
            where = save_artifacts(f"quickstart-{request.node.name}-{run.port}", logs)
            print(f"quickstart logs are in {where}")


def _field(html: str, pattern: str) -> str:
    found = re.search(pattern, html)
    assert found, f"{pattern!r} not in the page:\n{html[:3000]}"
    return found.group(1)


def test_quickstart_runs_the_demo_and_ctrl_c_stops_everything(quickstart: Any) -> None:
    run: Quickstart = quickstart()
    ready = run.wait_for(READY, START_DEADLINE)
    base_url = ready.group(1)
    assert int(ready.group(2)) == run.port
    out = run.text()
    assert f"annotator:  username annotator  password {PASSWORD}" in out
    assert f"manager:    username manager    password {PASSWORD}" in out

    # The API, as the manager.
    token = requests.post(f"{base_url}/api/auth/token/", json={"username": "manager", "password": PASSWORD}, timeout=60)
    assert token.status_code == 200, token.text
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token.json()['token']}"
    projects = api.get(f"{base_url}/api/projects/", timeout=60).json()["results"]
    demo = next(p for p in projects if p["name"] == DEMO_NAME)
    p = f"{base_url}/api/projects/{demo['id']}"
    counts = api.get(f"{p}/", timeout=60).json()["counts"]
    assert counts["samples"] == 1600
    assert counts["labeled"] == 100 and counts["queued"] == 1500

    def champion() -> list[dict[str, Any]]:
        return [m for m in api.get(f"{p}/models/", timeout=60).json()["results"] if "champion" in m["aliases"]]

    model = poll("the demo's champion model", champion, 90)[0]
    assert model["dataset_version"] == 1 and model["metrics"]["accuracy"] is not None
    run_of_model = api.get(f"{p}/runs/", timeout=60).json()["results"][-1]
    assert run_of_model["status"] == "succeeded" and run_of_model["model_version"] == model["version"]
    queue = api.get(f"{p}/queue/?limit=200", timeout=60).json()
    assert len(queue) == 200
    priorities = [item["priority"] for item in queue]
    assert priorities == sorted(priorities, reverse=True)
    assert priorities[0] > priorities[-1], "the queue is ranked, not flat"

    # The annotator's web page, as a browser with htmx would use it.
    web = requests.Session()
    login = web.get(f"{base_url}/accounts/login/", timeout=60)
    assert login.status_code == 200
    landed = web.post(
        f"{base_url}/accounts/login/",
        data={
            "username": "annotator",
            "password": PASSWORD,
            "csrfmiddlewaretoken": web.cookies["csrftoken"],
            "next": f"/projects/{demo['id']}/label/",
        },
        timeout=60,
    )
    assert landed.status_code == 200, landed.text[:2000]
    assert landed.url == f"{base_url}/projects/{demo['id']}/label/", "the login did not go through"
    page = landed.text
    assert "annotator" in page and 'id="task"' in page
    answer_url = _field(page, r'<form class="answers" hx-post="([^"]+)"')
    first_task = _field(page, r'data-task="(\d+)"')
    first_sample = _field(page, r"Sample <code>([^<]+)</code>")
    done_before = int(_field(page, r'<span id="done-today">(\d+)</span>'))
    csrf = json.loads(_field(page, r"hx-headers='([^']+)'"))["X-CSRFToken"]
    assert answer_url == f"/projects/{demo['id']}/label/{first_task}/answer/"

    swapped = web.post(
        f"{base_url}{answer_url}",
        data={"label": "7", "duration_ms": "1500"},
        headers={
            "X-CSRFToken": csrf,
            "HX-Request": "true",
            "HX-Target": "task",
            "HX-Current-URL": landed.url,
        },
        timeout=60,
    )
    assert swapped.status_code == 200, swapped.text[:2000]
    fragment = swapped.text
    assert fragment.lstrip().startswith('<section class="task card" id="task"'), "an htmx fragment, not a page"
    assert "Not saved" not in fragment
    assert int(_field(fragment, r'<span id="done-today">(\d+)</span>')) == done_before + 1
    next_task = _field(fragment, r'data-task="(\d+)"')
    assert next_task != first_task
    assert _field(fragment, r'<form class="answers" hx-post="([^"]+)"').endswith(f"/label/{next_task}/answer/")
    answered = api.get(f"{p}/samples/{first_sample}/", timeout=60).json()
    assert answered["label"]["label"] == "7"
    annotations = [(a["username"], a["label"], a["duration_ms"]) for a in answered["annotations"]]
    assert annotations == [("annotator", "7", 1500)]

    # Ctrl-C in the terminal: SIGINT to the whole foreground process group.
    os.killpg(run.pgid, signal.SIGINT)
    run.assert_everything_stops()


def test_sigterm_during_start_up_stops_everything(quickstart: Any) -> None:
    run: Quickstart = quickstart()
    # The servers are started and the demo is being built: the longest part of the start-up.
    run.wait_for(re.compile(r"==> building the demo project"), START_DEADLINE)

    poll("gunicorn to listen", lambda: port_open(run.port), 60, interval=0.1)
    assert not READY.search(run.text()), "the start-up finished before the signal could be sent"
    os.kill(run.process.pid, signal.SIGTERM)  # to quickstart alone, as a process manager would
    run.assert_everything_stops()
    assert not READY.search(run.text())
