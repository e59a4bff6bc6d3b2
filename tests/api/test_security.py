"""Who may call what: every /api/ route against no token, bad tokens, outsiders and each role.

The route matrix below is checked against Django's URL resolver, so a new endpoint fails
``test_matrix_covers_every_api_route`` until it is added here (and so gets the checks below).
"""

import hashlib
import importlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from rest_framework.test import APIClient

from feedback.models import DatasetVersion, ModelVersion, TrainingRun
from labeling.models import Annotation, ApiToken, Lease, Membership, Project, Role, Sample, Task, TaskStatus
from labeling.services.people import member_set, token_issue
from labeling.services.projects import project_create

pytestmark = pytest.mark.django_db

UNCHECKED = {"api/auth/token/", "api/schema/", "api/docs/"}
METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Entry:
    method: str
    route: str  # as the resolver spells it
    path: str  # with {project}, {task}, {run}, {model}, {dataset}, {sample} to fill in
    body: dict[str, Any] | list[Any] | None = None
    scoped: bool = True  # under one project: an outsider gets 404
    action: str = "read"  # what access.py calls the permission it needs

    def url(self, world: "World") -> str:
        return self.path.format(**world.ids())


P = "api/projects/<int:project_id>/"
MATRIX: list[Entry] = [
    Entry("POST", "api/users/", "/api/users/", {"username": "newcomer", "password": "long-enough-1"}, scoped=False),
    Entry("GET", "api/projects/", "/api/projects/", scoped=False),
    Entry(
        "POST",
        "api/projects/",
        "/api/projects/",
        {"name": "n", "labels": ["a", "b"], "schema": {"x": "numeric"}},
        scoped=False,
    ),
    Entry("GET", P, "/api/projects/{project}/"),
    Entry("PATCH", P, "/api/projects/{project}/", {"name": "renamed"}, action="manage"),
    Entry("GET", P + "members/", "/api/projects/{project}/members/"),
    Entry(
        "POST",
        P + "members/",
        "/api/projects/{project}/members/",
        {"username": "bystander", "role": "manager"},
        action="manage",
    ),
    Entry("GET", P + "queue/", "/api/projects/{project}/queue/"),
    Entry("POST", P + "tasks/next/", "/api/projects/{project}/tasks/next/", action="label"),
    Entry("GET", P + "labels/", "/api/projects/{project}/labels/"),
    Entry(
        "POST",
        "api/tasks/<int:task_id>/annotations/",
        "/api/tasks/{task}/annotations/",
        {"label": "cat"},
        action="label",
    ),
    Entry("POST", "api/tasks/<int:task_id>/skip/", "/api/tasks/{task}/skip/", action="label"),
    Entry("GET", P + "samples/", "/api/projects/{project}/samples/"),
    Entry(
        "POST",
        P + "samples/",
        "/api/projects/{project}/samples/",
        [{"external_id": "fresh-1", "data": {"x": 1.0, "colour": "red", "note": "n"}}],
        action="ingest",
    ),
    Entry("GET", P + "samples/<path:external_id>/", "/api/projects/{project}/samples/{sample}/"),
    Entry("GET", P + "datasets/", "/api/projects/{project}/datasets/"),
    Entry("POST", P + "datasets/", "/api/projects/{project}/datasets/", action="manage"),
    Entry("GET", P + "datasets/<int:version>/", "/api/projects/{project}/datasets/{dataset}/"),
    Entry(
        "GET",
        P + "datasets/<int:version>/export/",
        "/api/projects/{project}/datasets/{dataset}/export/?format=csv",
        action="export",
    ),
    Entry(
        "GET", P + "datasets/<int:version>/diff/", "/api/projects/{project}/datasets/{dataset}/diff/?against={dataset}"
    ),
    Entry("GET", P + "runs/", "/api/projects/{project}/runs/"),
    Entry("POST", P + "runs/", "/api/projects/{project}/runs/", {"dataset_version": 1}, action="manage"),
    Entry("GET", "api/runs/<int:run_id>/", "/api/runs/{run}/"),
    Entry("GET", P + "models/", "/api/projects/{project}/models/"),
    Entry(
        "POST",
        P + "models/<int:version>/promote/",
        "/api/projects/{project}/models/{model}/promote/",
        {"reason": "r"},
        action="manage",
    ),
    Entry(
        "POST",
        P + "predict/",
        "/api/projects/{project}/predict/",
        {"items": [{"data": {"x": 1.0, "colour": "red", "note": "cat"}}]},
        action="predict",
    ),
]
# Each stage keeps the entries of its own endpoints in tests/api/routes_<stage>.py, a function
# ``entries(Entry, P) -> list[Entry]``, so that stages do not edit one list.
for _stage in ("queue", "audit", "registry", "selection"):
    try:
        _module = importlib.import_module(f"tests.api.routes_{_stage}")
    except ModuleNotFoundError:
        continue
    MATRIX.extend(_module.entries(Entry, P))
SCOPED = [entry for entry in MATRIX if entry.scoped]


def _api_routes() -> set[tuple[str, str]]:
    """(METHOD, route) of every view under /api/ that the resolver knows, but the unchecked ones."""
    found: set[tuple[str, str]] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/") and route not in UNCHECKED:
                view = getattr(pattern.callback, "view_class", None)
                assert view is not None, f"{route}: not a class-based view, add it to the matrix by hand"
                found.update((method.upper(), route) for method in METHODS if hasattr(view, method))

    walk(get_resolver().url_patterns, "")
    return found


@dataclass
class World:
    project: Project
    manager: User
    task: Task
    run: TrainingRun
    model: ModelVersion
    dataset: DatasetVersion
    sample: Sample

    def ids(self) -> dict[str, Any]:
        return {
            "project": self.project.pk,
            "task": self.task.pk,
            "run": self.run.pk,
            "model": self.model.version,
            "dataset": self.dataset.version,
            "sample": self.sample.external_id,
        }


@pytest.fixture
def world(project: Project, manager: User, make_user: Any, client_for: Any, rows: Any, run_on_commit: Any) -> World:
    """The project with something behind every id: samples, a pending task, a dataset version,
    a training run and its model (the champion)."""
    api = client_for(manager)
    with run_on_commit():
        assert (
            api.post(f"/api/projects/{project.pk}/samples/", rows(12, labeled=True), format="json").status_code == 200
        )
    assert api.post(f"/api/projects/{project.pk}/samples/", rows(4, start=100), format="json").status_code == 200
    make_user("bystander")
    return World(
        project=project,
        manager=manager,
        task=Task.objects.filter(project=project, status=TaskStatus.PENDING).order_by("id").first(),  # type: ignore[arg-type]
        run=TrainingRun.objects.get(project=project),
        model=ModelVersion.objects.get(project=project),
        dataset=DatasetVersion.objects.get(project=project),
        sample=Sample.objects.filter(project=project).order_by("id").first(),  # type: ignore[arg-type]
    )


def call(client: Client, entry: Entry, world: World) -> Any:
    method = getattr(client, entry.method.lower())
    if entry.body is None:
        return method(entry.url(world))
    return method(entry.url(world), json.dumps(entry.body), content_type="application/json")


def fill(route: str, ids: dict[str, object]) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), route)


def member(make_user: Any, project: Project, username: str, role: Role) -> User:
    user = make_user(username)
    member_set(project=project, user=user, role=role)
    return user


def failures(client: Client, entries: list[Entry], world: World, expected: int) -> list[str]:
    out = []
    for entry in entries:
        response = call(client, entry, world)
        if response.status_code != expected:
            out.append(f"{entry.method} {entry.url(world)}: {response.status_code} {response.content[:200]!r}")
    return out


# --- the matrix -------------------------------------------------------------------------------


def test_matrix_covers_every_api_route() -> None:
    listed = {(entry.method, entry.route) for entry in MATRIX}
    routes = _api_routes()
    assert routes - listed == set(), "routes missing from the security matrix: add them to MATRIX"
    assert listed - routes == set(), "matrix entries for routes that no longer exist"
    assert len(listed) == len(MATRIX), "an entry is listed twice"


def test_matrix_paths_resolve_to_their_routes(world: World) -> None:
    for entry in MATRIX:
        assert resolve(entry.url(world).split("?")[0]).route == entry.route, entry


def test_owner_reaches_every_route(world: World, client_for: Any) -> None:
    """The positive control: with the right role nothing below is refused (so the 401/404 checks
    are about identity, not about a broken path or body)."""
    staff = client_for(User.objects.create_user("root", password="correct-horse", is_staff=True))
    manager = client_for(world.manager)
    for entry in MATRIX:
        client = staff if entry.route == "api/users/" else manager
        response = call(client, entry, world)
        assert response.status_code < 400 or response.status_code == 409, (entry, response.content[:300])


# --- authentication ---------------------------------------------------------------------------


def test_no_token_is_401_everywhere(world: World) -> None:
    assert failures(APIClient(), MATRIX, world, 401) == []


def test_garbage_tokens_are_401_everywhere(world: World) -> None:
    for header in (
        "Token not-a-real-key",
        "Token ",
        "Token a b",
        "Token \u00e9t\u00e9",
        "Bearer x",
        "Basic Zm9vOmJhcg==",
    ):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        assert failures(client, MATRIX, world, 401) == [], header


def test_expired_token_is_401_everywhere(world: World) -> None:
    key, _ = token_issue(user=world.manager)
    ApiToken.objects.filter(key_hash=hashlib.sha256(key.encode()).hexdigest()).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert failures(client, MATRIX, world, 401) == []


def test_inactive_user_token_is_401(world: World, client_for: Any) -> None:
    client = client_for(world.manager)
    User.objects.filter(pk=world.manager.pk).update(is_active=False)
    assert failures(client, MATRIX, world, 401) == []


def test_outsider_gets_404_on_every_project_path(world: World, outsider: User, client_for: Any) -> None:
    before = (Sample.objects.count(), Membership.objects.count(), Annotation.objects.count(), Lease.objects.count())
    assert failures(client_for(outsider), SCOPED, world, 404) == []
    after = (Sample.objects.count(), Membership.objects.count(), Annotation.objects.count(), Lease.objects.count())
    assert after == before
    world.project.refresh_from_db()
    assert world.project.name == "Tabular"


def test_ids_out_of_range_are_404_not_500(world: World, client_for: Any) -> None:
    client = client_for(world.manager)
    p = world.project.pk
    for huge in ("9" * 30, str(2**63), "0"):
        for entry in MATRIX:
            if "<int:" not in entry.route:
                continue
            # One id at a time out of range, the others real.
            for name in re.findall(r"<int:(\w+)>", entry.route):
                ids: dict[str, object] = {"project_id": p, "task_id": world.task.pk, "run_id": world.run.pk}
                ids["version"] = world.model.version if "models/" in entry.route else world.dataset.version
                ids["external_id"] = world.sample.external_id
                path = fill(entry.route, {**ids, name: huge})
                response = call(client, Entry(entry.method, entry.route, path, entry.body), world)
                assert response.status_code == 404, (entry.method, path, response.status_code)
    assert client.get(f"/api/projects/{p}/datasets/1/diff/?against={'9' * 30}").status_code == 404


# --- roles ------------------------------------------------------------------------------------


def test_annotator_cannot_manage_or_export(world: World, make_user: Any, client_for: Any, outsider: User) -> None:
    annotator = client_for(member(make_user, world.project, "ann", Role.ANNOTATOR))
    refused = [e for e in SCOPED if e.action in ("manage", "export", "ingest")]
    assert {(e.method, e.route.removeprefix(P)) for e in refused} >= {
        ("PATCH", ""),
        ("POST", "members/"),
        ("POST", "datasets/"),
        ("POST", "runs/"),
        ("POST", "models/<int:version>/promote/"),
        ("GET", "datasets/<int:version>/export/"),
    }
    assert failures(annotator, refused, world, 403) == []
    world.project.refresh_from_db()
    assert world.project.name == "Tabular"
    assert not User.objects.get(username="bystander").memberships.exists()
    assert DatasetVersion.objects.filter(project=world.project).count() == 1
    assert TrainingRun.objects.filter(project=world.project).count() == 1
    # What annotators may do they can: read the project and take a task.
    assert annotator.get(f"/api/projects/{world.project.pk}/").status_code == 200
    assert annotator.post(f"/api/projects/{world.project.pk}/tasks/next/").status_code == 200
    assert failures(client_for(outsider), refused, world, 404) == []


def test_ingest_account_may_only_send_samples(world: World, make_user: Any, client_for: Any) -> None:
    service = client_for(member(make_user, world.project, "pipeline", Role.INGEST))
    ingest = [e for e in SCOPED if e.action == "ingest"]
    assert [(e.method, e.route) for e in ingest] == [("POST", P + "samples/")]
    response = call(service, ingest[0], world)
    assert response.status_code == 200, response.content
    assert response.json()["created"] == 1
    assert Sample.objects.filter(project=world.project, external_id="fresh-1").exists()
    others = [e for e in SCOPED if e.action != "ingest"]
    before = (Lease.objects.count(), Annotation.objects.count(), Membership.objects.count())
    assert failures(service, others, world, 403) == []
    assert (Lease.objects.count(), Annotation.objects.count(), Membership.objects.count()) == before


def test_reviewer_can_export(world: World, make_user: Any, client_for: Any, outsider: User) -> None:
    reviewer = client_for(member(make_user, world.project, "rev", Role.REVIEWER))
    base = f"/api/projects/{world.project.pk}/datasets/{world.dataset.version}/export/"
    response = reviewer.get(base + "?format=csv")
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    # One column per schema field, in the order the API shows the schema (PostgreSQL's jsonb keeps
    # its own key order, not the creation order).
    shown = reviewer.get(f"/api/projects/{world.project.pk}/").json()["schema"]
    assert lines[0].split(",") == ["external_id", *shown, "label"]
    assert set(shown) == {"x", "colour", "note"}
    assert len(lines) == 1 + world.dataset.size
    jsonl = reviewer.get(base + "?format=jsonl")
    rows = [json.loads(line) for line in b"".join(jsonl.streaming_content).splitlines()]
    assert {row["external_id"] for row in rows} == {f"s{i}" for i in range(12)}
    assert reviewer.get(base + "?format=xls").status_code == 400
    assert reviewer.patch(f"/api/projects/{world.project.pk}/", {"name": "x"}, format="json").status_code == 403
    assert client_for(outsider).get(base + "?format=csv").status_code == 404


def test_staff_see_every_project(world: World, outsider: User, client_for: Any) -> None:
    staff = client_for(User.objects.create_user("root", password="correct-horse", is_staff=True))
    listed = {p["name"] for p in staff.get("/api/projects/").json()["results"]}
    assert listed == {"Tabular", "Other"}
    other = Project.objects.get(name="Other")
    assert staff.get(f"/api/projects/{other.pk}/").status_code == 200
    assert staff.get(f"/api/projects/{world.project.pk}/queue/").status_code == 200


def test_creating_users_is_staff_only(world: World, make_user: Any, client_for: Any, outsider: User) -> None:
    body = {"username": "created", "password": "long-enough-1"}
    for role in (Role.ANNOTATOR, Role.REVIEWER, Role.INGEST):
        client = client_for(member(make_user, world.project, f"u-{role}", role))
        assert client.post("/api/users/", body, format="json").status_code == 403, role
    for user in (world.manager, outsider):
        assert client_for(user).post("/api/users/", body, format="json").status_code == 403
    assert not User.objects.filter(username="created").exists()
    staff = client_for(User.objects.create_user("root", password="correct-horse", is_staff=True))
    response = staff.post("/api/users/", body, format="json")
    assert response.status_code == 201
    assert response.json() == {"id": User.objects.get(username="created").pk, "username": "created"}
    assert staff.post("/api/users/", body, format="json").status_code == 409
    login = APIClient().post("/api/auth/token/", body, format="json")
    assert login.status_code == 200
    assert not User.objects.get(username="created").is_staff


# --- tokens -----------------------------------------------------------------------------------


def test_tokens_store_only_the_hash_and_expire_in_the_future(manager: User) -> None:
    before = timezone.now()
    response = APIClient().post("/api/auth/token/", {"username": "manager", "password": "correct-horse"}, format="json")
    assert response.status_code == 200
    key = response.json()["token"]
    expires_at = datetime.fromisoformat(response.json()["expires_at"].replace("Z", "+00:00"))
    assert expires_at > before + timedelta(hours=1)
    token = ApiToken.objects.get(user=manager)
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert token.expires_at == expires_at
    for row in ApiToken.objects.values():
        assert all(key not in str(value) for value in row.values())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/projects/").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"username": "manager", "password": "wrong-horse"},
        {"username": "nobody", "password": "correct-horse"},
        {"username": "manager", "password": ""},
        {"username": "manager"},
        {},
    ],
)
def test_login_with_bad_credentials_is_400(manager: User, body: dict[str, str]) -> None:
    response = APIClient().post("/api/auth/token/", body, format="json")
    assert response.status_code == 400
    assert "token" not in response.json()
    assert not ApiToken.objects.exists()


def test_login_of_inactive_user_is_400(manager: User) -> None:
    User.objects.filter(pk=manager.pk).update(is_active=False)
    response = APIClient().post("/api/auth/token/", {"username": "manager", "password": "correct-horse"}, format="json")
    assert response.status_code == 400
    assert not ApiToken.objects.exists()


# --- visibility -------------------------------------------------------------------------------


def test_project_list_shows_only_the_callers_projects(
    world: World, make_user: Any, client_for: Any, outsider: User
) -> None:
    annotator = member(make_user, world.project, "ann", Role.ANNOTATOR)
    project_create(creator=world.manager, name="Second", labels=["a", "b"], schema={"x": "numeric"})

    def names(user: User) -> list[str]:
        body = client_for(user).get("/api/projects/").json()
        assert body["count"] == len(body["results"])
        return [p["name"] for p in body["results"]]

    assert names(world.manager) == ["Tabular", "Second"]
    assert names(annotator) == ["Tabular"]
    assert names(outsider) == ["Other"]
    assert names(make_user("loner")) == []


# --- schema, docs, pages, operations ------------------------------------------------------------


def test_schema_is_openapi_3_and_lists_the_api(world: World) -> None:
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for entry in MATRIX:
        assert "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", entry.route) in paths, entry.route


def test_docs_use_only_local_static_files() -> None:
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger" in html.lower()
    assert re.findall(r"""https?://[^\s"'<>]+""", html) == []
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert assets, "the page loads its scripts and styles from somewhere"
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
    for asset in assets:
        if asset.startswith("/static/"):
            served = Client().get(asset)
            assert served.status_code == 200, asset


def test_web_pages_enforce_csrf(world: World, make_user: Any, outsider: User) -> None:
    annotator = member(make_user, world.project, "ann", Role.ANNOTATOR)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(annotator)
    page = browser.get(f"/projects/{world.project.pk}/label/")
    assert page.status_code == 200
    lease = Lease.objects.filter(user=annotator).order_by("leased_at", "id")[0]  # the desk also holds the next
    answer = f"/projects/{world.project.pk}/label/{lease.task_id}/answer/"
    assert browser.post(answer, {"label": "cat"}).status_code == 403
    skip = f"/projects/{world.project.pk}/label/{lease.task_id}/skip/"
    assert browser.post(skip).status_code == 403
    assert not Annotation.objects.filter(user=annotator).exists()
    # With the token the same post goes through, so the 403 above was the CSRF check.
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page.content.decode()).group(1)  # type: ignore[union-attr]
    assert browser.post(answer, {"label": "cat"}, HTTP_X_CSRFTOKEN=token).status_code == 200
    assert Annotation.objects.filter(user=annotator, task_id=lease.task_id, label="cat").exists()

    stranger = Client()
    stranger.force_login(outsider)
    assert stranger.get(f"/projects/{world.project.pk}/label/").status_code == 404
    anonymous = Client().get(f"/projects/{world.project.pk}/label/")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_healthz_needs_no_auth() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] is True


def test_metrics_need_a_staff_token(world: World, client_for: Any, outsider: User) -> None:
    assert Client().get("/metrics").status_code == 401
    assert client_for(world.manager).get("/metrics").status_code == 401
    assert client_for(outsider).get("/metrics").status_code == 401
    garbage = Client(HTTP_AUTHORIZATION="Token nope")
    assert garbage.get("/metrics").status_code == 401
    staff_user = User.objects.create_user("root", password="correct-horse", is_staff=True)
    key, _ = token_issue(user=staff_user)
    ApiToken.objects.filter(user=staff_user).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/metrics").status_code == 401
    response = client_for(staff_user).get("/metrics")
    assert response.status_code == 200
    assert b"labelloop_projects 2.0" in response.content
