"""/healthz answers for the database and the broker; /metrics speaks Prometheus to staff."""

from typing import Any

import pytest
from django.test import Client
from kombu import Connection

from labelloop.celery import app


@pytest.mark.django_db
def test_healthz_ok() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "broker": True}


@pytest.mark.django_db
def test_healthz_503_when_the_broker_is_unreachable(monkeypatch: Any) -> None:
    monkeypatch.setattr(app, "connection_for_write", lambda: Connection("redis://127.0.0.1:1/0"))
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"] is False and response.json()["database"] is True


def test_metrics_for_staff(make_user: Any, client_for: Any) -> None:
    staff = make_user("root", staff=True)
    response = client_for(staff).get("/metrics")
    assert response.status_code == 200
    assert "labelloop_projects" in response.content.decode()
    assert client_for(make_user("plain")).get("/metrics").status_code == 401
