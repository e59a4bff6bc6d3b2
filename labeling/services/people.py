"""Users, members and API tokens."""

import hashlib
import secrets
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from labeling.models import ApiToken, Membership, Project, Role


class Conflict(Exception):
    """The request is valid but clashes with what is stored (answered with 409)."""


def token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_issue(*, user: User) -> tuple[str, datetime]:
    """Create an API token for ``user``; returns the key (never stored) and its expiry.

    Expired tokens of the same user are deleted here, so they do not pile up.
    """
    now = timezone.now()
    key = secrets.token_urlsafe(32)
    expires_at = now + settings.API_TOKEN_TTL
    with transaction.atomic():
        ApiToken.objects.filter(user=user, expires_at__lt=now).delete()
        ApiToken.objects.create(key_hash=token_hash(key), user=user, created_at=now, expires_at=expires_at)
    return key, expires_at


def user_create(*, username: str, password: str) -> User:
    """Create a user; raises Conflict when the username is taken."""
    try:
        with transaction.atomic():
            return User.objects.create_user(username=username, password=password)
    except IntegrityError as exc:
        raise Conflict(f"user {username!r} already exists") from exc


def member_set(*, project: Project, user: User, role: Role | str) -> tuple[Membership, bool]:
    """Give ``user`` a ``role`` in ``project`` (changing it if they are already a member)."""
    membership, created = Membership.objects.update_or_create(project=project, user=user, defaults={"role": str(role)})
    return membership, created
