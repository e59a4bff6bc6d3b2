"""The manager's dashboard (labeling/web/dashboard.py): queue composition by reason, labels per hour
per annotator and time per label, as server-rendered SVG with their figures in tables."""

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from labeling import queue
from labeling.models import Gold, Project, Reason, Role, Sample, Task, TaskKind
from labeling.services.people import member_set
from labeling.services.samples import NewSample, samples_add_bulk
from labeling.web import charts

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_dashboard_shows_the_queue_by_reason_and_each_annotators_pace(
    project: Project, manager: User, make_user: Callable[..., User]
) -> None:
    reasons = ["uncertainty"] * 3 + ["drift"] * 2 + ["random"]
    items = [NewSample(external_id=f"d{i}", data={"x": 1.0}, reason=r) for i, r in enumerate(reasons)]
    samples_add_bulk(project=project, items=items, actor=None)
    gold_sample = Sample.objects.get(external_id="d5")
    Gold.objects.create(sample=gold_sample, project=project, label="cat")
    Task.objects.create(
        project=project, sample=gold_sample, kind=TaskKind.GOLD, reason=Reason.GOLD, overlap=32767, priority=0
    )
    people = [make_user("alice"), make_user("bob")]
    for user in people:
        member_set(project=project, user=user, role=Role.ANNOTATOR)
    for user, n, ms in [(people[0], 2, 1000), (people[1], 1, 3000)]:
        for _ in range(n):
            leased = queue.task_lease_next(project=project, user=user, role="annotator")
            assert leased is not None
            queue.annotation_submit(task_id=leased.task.pk, user=user, label="cat", duration_ms=ms)

    response = _client(manager).get(f"/projects/{project.pk}/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    # 6 label tasks less 3 answered, and the gold task; gold is named for what it is here.
    assert "Queue: 4 pending tasks" in html
    table = html.split('id="queue-table"', 1)[1].split("</table>", 1)[0]
    assert "<td>gold</td><td>1</td>" in table
    assert sum(int(n) for n in re.findall(r"<td>(\d+)</td>", table)) == 4
    assert html.count("<svg") == 3 and "cdn" not in html.lower()
    people_table = html.split('id="people-table"', 1)[1].split("</table>", 1)[0]
    assert "<td>alice</td><td>2</td><td>2</td><td>1.0</td>" in people_table
    assert "<td>bob</td><td>1</td><td>1</td><td>3.0</td>" in people_table


def test_dashboard_is_for_managers_only(
    project: Project, manager: User, annotator: User, outsider: User, make_user: Callable[..., User]
) -> None:
    reviewer = make_user("rev")
    member_set(project=project, user=reviewer, role=Role.REVIEWER)
    url = f"/projects/{project.pk}/dashboard/"
    assert _client(manager).get(url).status_code == 200
    for user in [annotator, reviewer, outsider]:
        assert _client(user).get(url).status_code == 404
    assert Client().get(url).status_code == 302
    html = _client(manager).get("/").content.decode()
    assert f'href="/projects/{project.pk}/dashboard/"' in html
    assert f'href="/projects/{project.pk}/dashboard/"' not in _client(annotator).get("/").content.decode()


def test_charts_escape_names_and_scale_to_the_largest() -> None:
    svg = str(charts.hbars("Queue", [("<script>", 10), ("b", 5)]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    widths = [float(w) for w in re.findall(r'<rect x="160" y="\d+" width="([\d.]+)"', svg)]
    assert widths[0] == pytest.approx(2 * widths[1])
    line = str(charts.lines("Per hour", ["00:00", "01:00", "02:00"], [("a&b", [0, 2, 1])]))
    assert "a&amp;b" in line and "<polyline" in line
