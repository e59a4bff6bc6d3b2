"""Events the labeling side emits for whoever builds on it (the feedback loop).

``labeling`` never imports ``feedback``; instead feedback registers a listener when its app is
ready. Listeners are called after the emitting transaction commits, with ids only, and must be
cheap (they typically enqueue a Celery task).
"""

from collections.abc import Callable
from functools import partial

from django.db import transaction

LabelsFinalizedListener = Callable[[int], None]
_labels_finalized: list[LabelsFinalizedListener] = []


def on_labels_finalized(listener: LabelsFinalizedListener) -> None:
    """Register ``listener(project_id)`` to run after a transaction that changed final labels commits."""
    if listener not in _labels_finalized:
        _labels_finalized.append(listener)


def emit_labels_finalized(project_id: int) -> None:
    """Schedule the listeners for after the current transaction commits (call inside one)."""
    for listener in _labels_finalized:
        transaction.on_commit(partial(listener, project_id))
