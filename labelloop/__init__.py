"""The Labelloop Django project: settings, URLs, the Celery app."""

from labelloop.celery import app as celery_app

__all__ = ["celery_app"]
