"""Settings for the test process: the real settings, with test defaults for what the environment
does not say (run-tests sets DATABASE_URL and the broker for PostgreSQL runs)."""

import os
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "labelloop-tests-only")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
os.environ.setdefault("LABELLOOP_VAR_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))

from labelloop.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast users in tests only
