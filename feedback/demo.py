"""The quick start's demo project, built from scikit-learn's handwritten digits (ships offline).

Everything goes through the real services: a seed of labeled samples is ingested (which cuts the
first version and enqueues the first training run for the worker), then a stream of production
samples carrying a deliberately weak model's probabilities.
"""

import base64
import io
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from feedback.ingest import samples_ingest
from labeling.models import Project, Role
from labeling.services.people import member_set
from labeling.services.projects import project_create

PROJECT_NAME = "Handwritten digits (demo)"
ANNOTATOR = ("annotator", "labelloop-demo")
MANAGER = ("manager", "labelloop-demo")
N_SEED = 100
N_PRODUCTION = 1500
N_WEAK = 40  # the "production model" saw this few examples, so it is often unsure
LABELS = [str(d) for d in range(10)]


@dataclass(frozen=True)
class Demo:
    project: Project
    created: bool
    annotator: tuple[str, str]
    manager: tuple[str, str]


def digit_png(pixels: np.ndarray) -> str:
    """An 8x8 digit (values 0..16) as a PNG data URL; the page scales it up, pixelated."""
    image = Image.fromarray((255 - pixels.reshape(8, 8) * 255 / 16).astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _user(username: str, password: str) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        user = User.objects.create_user(username=username, password=password)
    return user


def build(seed: int = 0) -> Demo:
    existing = Project.objects.filter(name=PROJECT_NAME).first()
    if existing is not None:
        return Demo(existing, False, ANNOTATOR, MANAGER)
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    seed_idx, weak_idx = order[:N_SEED], order[N_SEED : N_SEED + N_WEAK]
    production_idx = order[N_SEED + N_WEAK : N_SEED + N_WEAK + N_PRODUCTION]
    weak = LogisticRegression(max_iter=200, C=0.05).fit(digits.data[weak_idx], digits.target[weak_idx])
    probabilities = weak.predict_proba(digits.data[production_idx])
    now = timezone.now()
    with transaction.atomic():
        manager = _user(*MANAGER)
        annotator = _user(*ANNOTATOR)
        project = project_create(
            creator=manager,
            name=PROJECT_NAME,
            labels=LABELS,
            schema={"image": "image"},
            settings={"retrain": {"min_new_labels": 50}},
        )
        member_set(project=project, user=annotator, role=Role.ANNOTATOR)
    seeds: list[dict[str, Any]] = [
        {
            "external_id": f"digit-{i}",
            "data": {"image": digit_png(digits.data[i])},
            "label": str(digits.target[i]),
            "observed_at": (now - timedelta(days=7)).isoformat(),
        }
        for i in seed_idx
    ]
    samples_ingest(project=project, items=seeds, actor=manager)
    stream: list[dict[str, Any]] = [
        {
            "external_id": f"digit-{i}",
            "data": {"image": digit_png(digits.data[i])},
            "prediction": {"probabilities": {str(c): float(p) for c, p in zip(weak.classes_, row, strict=True)}},
            "model_version": "weak-prod-1",
            "observed_at": (now - timedelta(minutes=N_PRODUCTION - k)).isoformat(),
        }
        for k, (i, row) in enumerate(zip(production_idx, probabilities, strict=True))
    ]
    samples_ingest(project=project, items=stream, actor=manager)
    return Demo(project, True, ANNOTATOR, MANAGER)
