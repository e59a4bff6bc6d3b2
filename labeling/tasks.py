"""Celery tasks of the labeling side (found by the worker's autodiscovery)."""
