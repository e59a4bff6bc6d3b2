"""Celery tasks of label-quality audits (imported by feedback.tasks so that the worker finds them)."""
