"""Celery tasks of selection and drift (imported by feedback.tasks so that the worker finds them)."""
