"""The annotator page in a real browser (Debian's Chromium through Playwright) against the live server:
log in, label with the keyboard, undo, skip, see the counters change, reach the end of the queue.
Screenshots go to test-artifacts/."""

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.urls import resolve
from PIL import Image

from labeling.models import Annotation, Lease, LeaseStatus, Project, Role, Task, TaskStatus
from labeling.services.people import member_set
from labeling.services.projects import project_create
from labeling.services.samples import NewSample, samples_add_bulk

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "correct-horse-battery"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"the browser tests drive Debian's Chromium at {CHROMIUM}"),
]

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


def _png_data_url(shade: int) -> str:
    image = Image.new("RGB", (8, 8), (shade, 255 - shade, 128))
    image.putpixel((0, 0), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch, live_server: Any) -> Iterator[Any]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes while
    # it runs are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # Import the URLconf (and with it the API's scientific stack) here rather than on the live
    # server's first request, where it could outlast the browser's navigation timeout.
    resolve("/")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live_server.url)
        context.set_default_timeout(10_000)
        expect.set_options(timeout=10_000)  # a loaded CI machine; these are waits, not timing checks
        page = context.new_page()
        try:
            yield page
        finally:
            context.close()
            browser.close()
            # While Playwright's loop runs, Django keeps this thread's connections in a separate
            # (async-context) slot, which the test database teardown would not close.
            connections.close_all()


@pytest.fixture
def desk() -> tuple[Project, User, list[Task]]:
    """A project with a numeric, a categorical, a text and an image field, an annotator, and seven
    pending tasks in hand-out order."""
    manager = User.objects.create_user("boss", password=PASSWORD)
    project = project_create(
        creator=manager,
        name="Pets",
        labels=["cat", "dog", "bird"],
        schema={"weight": "numeric", "colour": "categorical", "note": "text", "photo": "image"},
    )
    annotator = User.objects.create_user("ann", password=PASSWORD)
    member_set(project=project, user=annotator, role=Role.ANNOTATOR)
    items = [
        NewSample(
            external_id=f"pet-{i}",
            data={
                "weight": 1.5 + i,
                "colour": ["red", "green", "blue"][i % 3],
                "note": f"Pet number {i} <b>not bold</b>",
                "photo": _png_data_url(30 * i),
            },
            priority=10.0 - i,
        )
        for i in range(7)
    ]
    samples_add_bulk(project=project, items=items, actor=None)
    tasks = list(Task.objects.filter(project=project).select_related("sample").order_by("-priority", "id"))
    assert [t.sample.external_id for t in tasks] == [f"pet-{i}" for i in range(7)]
    return project, annotator, tasks


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"annotator-{name}.png"), full_page=True)


def test_label_with_the_keyboard_until_the_queue_is_empty(
    page: Any, live_server: Any, desk: tuple[Project, User, list[Task]]
) -> None:
    project, annotator, tasks = desk
    label_url = f"/projects/{project.pk}/label/"
    static_status: dict[str, int] = {}
    page.on("response", lambda r: static_status.update({r.url: r.status}) if "/static/" in r.url else None)
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    page.on("console", lambda msg: page_errors.append(msg.text) if msg.type == "error" else None)

    # Not logged in: the annotator page sends us to the login form, which sends us back.
    page.goto(label_url)
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next={label_url}")
    _shot(page, "01-login")
    page.get_by_label("Username").fill("ann")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong password")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}{label_url}")

    # Both scripts arrived and ran.
    assert page.evaluate("typeof window.htmx") == "object"
    assert page.evaluate("window.htmx.version").startswith("2.")
    assert {url.rsplit("/static/", 1)[1]: s for url, s in static_status.items()} == {
        "labelloop/app.css": 200,
        "vendor/htmx.min.js": 200,
        "labelloop/app.js": 200,
    }

    # The first sample, all four kinds of field.
    sample = page.locator("#task .sample")
    expect(sample).to_have_attribute("data-task", str(tasks[0].pk))
    expect(page.locator("#task table.fields tr")).to_have_count(2)
    expect(page.locator("#task table.fields tr", has_text="weight").locator("td")).to_have_text("1.5")
    expect(page.locator("#task table.fields tr", has_text="colour").locator("td")).to_have_text("red")
    expect(page.locator("#task .field-text p")).to_have_text("Pet number 0 <b>not bold</b>")  # escaped, not markup
    image = page.get_by_role("img", name="photo of sample pet-0")
    expect(image).to_have_attribute("src", tasks[0].sample.data["photo"])
    page.wait_for_function("img => img.complete && img.naturalWidth === 8", arg=image.element_handle())
    expect(page.locator("#done-today")).to_have_text("0")
    expect(page.locator("#left")).to_have_text("7")
    for number, label in enumerate(project.labels, start=1):
        expect(page.get_by_role("button", name=f"{number} {label}")).to_be_visible()

    # A reload resumes the held task instead of leasing another one; the next one is held already.
    page.reload()
    expect(sample).to_have_attribute("data-task", str(tasks[0].pk))
    assert set(Lease.objects.filter(user=annotator).values_list("task_id", flat=True)) == {tasks[0].pk, tasks[1].pk}
    expect(page.locator("#next .sample")).to_have_attribute("data-task", str(tasks[1].pk))
    _shot(page, "02-first-task")

    # The keys, on `?`; Escape closes them.
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard")).to_be_visible()
    expect(page.get_by_role("dialog")).to_contain_text("undo your last answer")
    _shot(page, "03-help")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)

    # From here on no full page load may happen: this global would be lost.
    page.evaluate("window.__sameDocument = 'still here'")
    keys = ["1", "2", "3", "1", "2"]
    for i, key in enumerate(keys):
        page.keyboard.press(key)
        expect(sample).to_have_attribute("data-task", str(tasks[i + 1].pk))
        expect(page.locator("#done-today")).to_have_text(str(i + 1))
        expect(page.locator("#left")).to_have_text(str(6 - i))
        expect(page.locator("#task .field-text p")).to_have_text(f"Pet number {i + 1} <b>not bold</b>")
        if i == 2:
            _shot(page, "04-after-three")
    assert page.evaluate("window.__sameDocument") == "still here"

    # `u` takes the fifth answer back: that task is on screen again and the counters go back.
    expect(page.locator("#undo")).to_contain_text("Saved dog")
    page.keyboard.press("u")
    expect(sample).to_have_attribute("data-task", str(tasks[4].pk))
    expect(page.locator("#notice")).to_contain_text("Answer taken back")
    expect(page.locator("#done-today")).to_have_text("4")
    expect(page.locator("#left")).to_have_text("3")
    _shot(page, "05-after-undo")
    page.keyboard.press("2")
    expect(sample).to_have_attribute("data-task", str(tasks[5].pk))
    expect(page.locator("#done-today")).to_have_text("5")
    expect(page.locator("#left")).to_have_text("2")

    # A held-down key repeats; the repeats are ignored, so `s` then skips the sixth task: the counter
    # of done work stays, the queue shrinks.
    page.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', {key: '1', repeat: true, bubbles: true}))")
    page.keyboard.press("s")
    expect(sample).to_have_attribute("data-task", str(tasks[6].pk))
    expect(page.locator("#done-today")).to_have_text("5")
    expect(page.locator("#left")).to_have_text("1")
    _shot(page, "06-after-skip")

    # The narrow (phone) layout of the same task: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("button", name="3 bird")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    _shot(page, "07-narrow")
    page.set_viewport_size({"width": 1280, "height": 800})

    # The last one by mouse, so a click sends its label as well as a key press does.
    page.get_by_role("button", name="3 bird").click()
    expect(page.get_by_role("status")).to_have_text("Nothing left to label for you in this project. Thank you!")
    expect(page.locator("#task .sample")).to_have_count(0)
    expect(page.locator("#done-today")).to_have_text("6")
    expect(page.locator("#left")).to_have_text("0")
    assert page.evaluate("window.__sameDocument") == "still here"
    page.keyboard.press("1")  # nothing to answer any more: a stray key does nothing
    expect(page.get_by_role("status")).to_contain_text("Nothing left to label")
    _shot(page, "08-empty")

    answers = list(
        Annotation.objects.filter(user=annotator).order_by("id").values_list("task_id", "label", "duration_ms")
    )
    assert [(task_id, label) for task_id, label, _ in answers] == [
        (tasks[0].pk, "cat"),
        (tasks[1].pk, "dog"),
        (tasks[2].pk, "bird"),
        (tasks[3].pk, "cat"),
        (tasks[4].pk, "dog"),  # answered, taken back, answered again: one answer
        (tasks[6].pk, "bird"),
    ]
    assert all(duration is not None and duration >= 0 for _, _, duration in answers), answers
    assert Lease.objects.get(task=tasks[5], user=annotator).status == LeaseStatus.SKIPPED
    statuses = dict(Task.objects.filter(project=project).values_list("id", "status"))
    assert statuses == {t.pk: TaskStatus.PENDING if t == tasks[5] else TaskStatus.DONE for t in tasks}
    assert page_errors == []


def _log_in(page: Any, live_server: Any, next_url: str) -> None:
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next={next_url}")
    page.get_by_label("Username").fill("ann")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}{next_url}")


def test_failures_and_lost_sessions_are_not_silent(
    page: Any, live_server: Any, desk: tuple[Project, User, list[Task]]
) -> None:
    project, annotator, tasks = desk
    label_url = f"/projects/{project.pk}/label/"
    sample = page.locator("#task .sample")
    page.goto(label_url)
    _log_in(page, live_server, label_url)
    expect(sample).to_have_attribute("data-task", str(tasks[0].pk))

    # The network fails: the page says so, and the same task can be answered once it is back.
    page.route("**/answer/", lambda route: route.abort())
    page.keyboard.press("1")
    expect(page.get_by_role("alert")).to_have_text(
        "Not sent: the server could not be reached. Try again, or reload the page."
    )
    expect(sample).to_have_attribute("data-task", str(tasks[0].pk))
    _shot(page, "09-network-failure")
    page.unroute("**/answer/")
    page.keyboard.press("1")
    expect(sample).to_have_attribute("data-task", str(tasks[1].pk))
    expect(page.get_by_role("alert")).to_have_count(0)

    # The lease on the task on screen runs out: the page says so before the server refuses it.
    page.evaluate("document.querySelector('#task .sample').dataset.expires = new Date(Date.now() - 1000).toISOString()")
    expect(page.locator("#notice")).to_contain_text("Your lease on this task expired")
    _shot(page, "10-lease-expired")

    # Logging out and in again in another tab rotates the CSRF secret; this tab still works.
    other = page.context.new_page()
    other.goto("/")
    other.get_by_role("button", name="Log out").click()
    other.goto(label_url)
    _log_in(other, live_server, label_url)
    other.close()
    page.keyboard.press("2")
    expect(sample).to_have_attribute("data-task", str(tasks[2].pk))

    # The session expired (its cookie is gone, the CSRF cookie stays): the next key press leads to
    # the login page, which leads back here.
    page.context.clear_cookies(name="sessionid")
    page.keyboard.press("3")
    _log_in(page, live_server, label_url)
    expect(sample).to_have_attribute("data-task", str(tasks[2].pk))

    answers = list(Annotation.objects.filter(user=annotator).order_by("id").values_list("task_id", "label"))
    assert answers == [(tasks[0].pk, "cat"), (tasks[1].pk, "dog")]
