"""Shared fixtures: users with tokens, projects, an API client per user, and on-commit running."""

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from labeling.models import Project, Role
from labeling.services.people import member_set, token_issue
from labeling.services.projects import project_create

DIGITS = [str(d) for d in range(10)]


@pytest.fixture
def make_user(db: Any) -> Callable[..., User]:
    def make(username: str, *, staff: bool = False, password: str = "correct-horse") -> User:
        user = User.objects.create_user(username=username, password=password, is_staff=staff)
        return user

    return make


@pytest.fixture
def client_for() -> Callable[[User], APIClient]:
    def make(user: User) -> APIClient:
        key, _ = token_issue(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client

    return make


@pytest.fixture
def manager(make_user: Callable[..., User]) -> User:
    return make_user("manager")


@pytest.fixture
def outsider(make_user: Callable[..., User]) -> User:
    """A member of another project only: must get 404 on everything of ours."""
    user = make_user("outsider")
    project_create(creator=user, name="Other", labels=["a", "b"], schema={"x": "numeric"})
    return user


@pytest.fixture
def project(manager: User) -> Project:
    return project_create(
        creator=manager,
        name="Tabular",
        labels=["cat", "dog", "bird"],
        schema={"x": "numeric", "colour": "categorical", "note": "text"},
        settings={"retrain": {"min_new_labels": 5}},
    )


@pytest.fixture
def annotator(make_user: Callable[..., User], project: Project) -> User:
    user = make_user("annotator")
    member_set(project=project, user=user, role=Role.ANNOTATOR)
    return user


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks: Any) -> Callable[[], Any]:
    """``with run_on_commit(): ...`` runs the block's on-commit callbacks (and theirs) at its end,
    as a real commit would; Celery runs eagerly in these tests."""

    def capture() -> Any:
        return django_capture_on_commit_callbacks(execute=True)

    return capture


def sample_rows(n: int, *, start: int = 0, labeled: bool = False, probabilities: bool = True) -> list[dict[str, Any]]:
    """Rows for the ``project`` fixture: x separates the classes, so a model can learn them."""
    labels = ["cat", "dog", "bird"]
    rows = []
    for i in range(start, start + n):
        label = labels[i % 3]
        row: dict[str, Any] = {
            "external_id": f"s{i}",
            "data": {
                "x": float(i % 3) * 10 + (i % 7) * 0.1,
                "colour": ["red", "green", "blue"][i % 3],
                "note": f"{label} number {i}",
            },
            "observed_at": f"2026-11-{1 + i % 28:02d}T12:00:00+00:00",
        }
        if labeled:
            row["label"] = label
        if probabilities:
            p = 0.34 + (i % 10) * 0.06
            rest = (1 - p) / 2
            row["prediction"] = {"label": label, "probabilities": {label: p, **{o: rest for o in labels if o != label}}}
        rows.append(row)
    return rows


@pytest.fixture
def rows() -> Callable[..., list[dict[str, Any]]]:
    return sample_rows
