"""Turning a finished task's answers into the sample's final label (or a review).

``task_finalize`` is what the queue calls, in its transaction, when a task has its ``overlap``
answers. The algorithms themselves are pure, in ``labeling.consensus``.
"""

from labeling.consensus import majority_vote
from labeling.models import Annotation, LabelMethod, Task
from labeling.services.labels import LabelDecision, labels_set


def task_finalize(*, task: Task) -> None:
    """Decide the final label of a done task's sample by majority vote over its answers.

    Called by labeling.queue with the task row locked; must not lock rows of other tasks first.
    """
    answers = list(Annotation.objects.filter(task=task).order_by("created_at", "id").values_list("label", flat=True))
    result = majority_vote(answers)
    labels_set(
        project_id=task.project_id,
        decisions=[
            LabelDecision(
                sample_id=task.sample_id,
                label=result.label,
                confidence=result.confidence,
                method=LabelMethod.MAJORITY,
                n_annotations=result.n_annotations,
            )
        ],
        actor=None,
    )
