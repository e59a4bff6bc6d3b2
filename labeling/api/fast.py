"""The two hottest API calls, answered before Django's request machinery on PostgreSQL.

``POST /api/projects/{id}/tasks/next/`` and ``POST /api/tasks/{id}/annotations/`` are what every
annotator client sends, one after the other, all day. Through Django and DRF each costs a few
milliseconds of Python (middleware, the token lookup, the database health check, content
negotiation) around one SQL statement. Here, when the call is the ordinary successful one, it is
that statement alone: the token is checked inside it (``labeling_apitoken`` joined in, with the
user's active flag and expiry), and so are the caller's role, the project's settings and every rule
of ``labeling.queue_pg``.

Anything else goes to Django unchanged and is answered there, with the same statement run again:
a missing or bad token (401), a stranger (404), a role that may not label (403), a malformed body
or label (400), a conflict (409), an empty queue (204), an answer that needs ``task_finalize``, and
every database error. That is safe because the statement writes nothing unless it succeeds. So the
fast path decides nothing Django would decide otherwise; it only skips work on the common path.
Set ``LABELLOOP_FAST_API=0`` to send everything through Django.
"""

import hashlib
import io
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from labeling import queue_pg

logger = logging.getLogger(__name__)
ENABLED = os.environ.get("LABELLOOP_FAST_API", "1").strip().lower() not in {"0", "false", "no", "off"}
NEXT_PATH = re.compile(r"/api/projects/([1-9][0-9]{0,17})/tasks/next/")
ANSWER_PATH = re.compile(r"/api/tasks/([1-9][0-9]{0,17})/annotations/")
MAX_BODY = 4096
MAX_DURATION_MS = 86_400_000
# How long a changed label waits before the labels_finalized listeners hear of it, so that the
# answers of a busy second cost one round of listeners per project and process, not one each.
EMIT_DELAY = float(os.environ.get("LABELLOOP_EMIT_DELAY", "0.5"))

# Who the token names: its user while the token is unexpired and the user active (as
# labeling.auth.ApiTokenAuthentication checks), else no row, and then the statement finds no role.
_AUTH = """WITH auth AS (
    SELECT t.user_id, u.is_staff FROM labeling_apitoken t JOIN auth_user u ON u.id = t.user_id
    WHERE t.key_hash = %(key_hash)s AND t.expires_at > %(now)s AND u.is_active
),"""


def _with_auth(statement: str) -> str:
    """``statement`` (a queue_pg statement starting with WITH) taking the user from the token."""
    assert statement.startswith("WITH")
    body = statement[len("WITH") :]
    body = body.replace("%(staff)s::boolean", "COALESCE((SELECT is_staff FROM auth), false)")
    body = body.replace("%(user)s", "(SELECT user_id FROM auth)")
    return _AUTH + body


# A hand-out commits without waiting for its WAL to reach the disk (synchronous_commit off for
# its own transaction only: the fast path runs it alone, in autocommit). What a crash could lose
# is a lease of the last fraction of a second: its task is pending again and its holder's answer
# is refused (no live lease), never stored twice. Every answer still commits durably, and
# flushing its commit flushes every hand-out before it, its own lease included.
FAST_NEXT = _with_auth(queue_pg.NEXT).replace(
    "SELECT t.user_id, u.is_staff FROM",
    "SELECT t.user_id, u.is_staff, set_config('synchronous_commit', 'off', true) FROM",
    1,
)
assert "set_config" in FAST_NEXT
FAST_ANSWER = _with_auth(queue_pg.ANSWER)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _token_hash(environ: dict[str, Any]) -> str | None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    keyword, _, key = header.partition(" ")
    if keyword.lower() != "token" or not key or " " in key or not key.isascii():
        return None
    return hashlib.sha256(key.encode()).hexdigest()


def _respond(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    payload = orjson.dumps(body)
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(payload))),
        ("Vary", "Accept, Authorization"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
    ]
    start_response(status, headers)
    return [payload]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _next(project_id: int, key_hash: str, now: datetime) -> dict[str, Any] | None:
    from labeling.project_settings import DEFAULTS
    from labeling.queue import GOLD_SHOWN_AS, TAKES_REVIEWS, TAKES_TASKS

    row = queue_pg.run(
        FAST_NEXT,
        {
            "project": project_id,
            "key_hash": key_hash,
            "roles": list(TAKES_TASKS),
            "review_roles": list(TAKES_REVIEWS),
            "with_reviews": True,
            "now": now,
            "lease_default": DEFAULTS["queue"]["lease_seconds"],
            "show_default": DEFAULTS["queue"]["show_suggestion"],
        },
    )
    picked = queue_pg.picked_from(row, project_id)
    if not (picked.found and picked.allowed and picked.leased) or picked.expires_at is None:
        return None
    fields, sample = picked.fields, picked.sample
    gold = fields["kind"] == "gold"
    return {
        "task_id": fields["id"],
        "external_id": sample["external_id"],
        "data": _json(sample["data"]),
        "reason": GOLD_SHOWN_AS if gold else fields["reason"],
        "kind": "label" if gold else fields["kind"],
        "suggestion": _json(sample["suggestion"]) if picked.show_suggestion else None,
        "lease_expires_at": _iso(picked.expires_at),
    }


def _answer_input(environ: dict[str, Any]) -> tuple[bytes, str, int | None] | None:
    """The raw body and (label, duration_ms) when the body is the plain JSON AnnotationIn accepts
    unchanged; None for anything DRF would parse, coerce or refuse (Django answers those)."""
    if not environ.get("CONTENT_TYPE", "").startswith("application/json"):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or "0")
    except ValueError:
        return None
    if not 0 < length <= MAX_BODY:
        return None
    raw = environ["wsgi.input"].read(length)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return (raw, "", None) if raw else None
    label, duration = (data.get("label"), data.get("duration_ms")) if isinstance(data, dict) else (None, None)
    plain_duration = duration is None or (
        isinstance(duration, int) and not isinstance(duration, bool) and 0 <= duration <= MAX_DURATION_MS
    )
    if not isinstance(data, dict) or set(data) - {"label", "duration_ms"} or not plain_duration:
        return (raw, "", None)
    if not isinstance(label, str) or not 0 < len(label) <= 200 or label != label.strip() or "\x00" in label:
        return (raw, "", None)
    return raw, label, duration


def _answer(task_id: int, key_hash: str, label: str, duration: int | None, now: datetime) -> dict[str, Any] | None:
    from labeling import events
    from labeling.project_settings import DEFAULTS
    from labeling.queue import TAKES_TASKS

    chosen = DEFAULTS["consensus"]
    row = queue_pg.run(
        FAST_ANSWER,
        {
            "task": task_id,
            "key_hash": key_hash,
            "roles": list(TAKES_TASKS),
            "label": label,
            "duration": duration,
            "now": now,
            "method_default": chosen["method"],
            "review_below_default": float(chosen["review_below"]),
        },
    )
    done = queue_pg.answered_from(row)
    if done.annotation_id is None or done.project_id is None:
        return None
    if done.label_changed:
        if EMIT_DELAY > 0:
            _emit_soon(done.project_id)
        else:
            events.emit_labels_finalized(done.project_id)  # autocommit: the listeners run now
    return {
        "id": done.annotation_id,
        "task_id": task_id,
        "label": label,
        "duration_ms": duration,
        "created_at": _iso(now),
    }


_pending: set[int] = set()
_pending_lock = threading.Lock()


def _emit_soon(project_id: int) -> None:
    """labels_finalized for the project in EMIT_DELAY seconds, once for every label changed (and
    committed) until then. The listeners are level-triggered (they look at what the database holds,
    e.g. how many labels are new), so one call sees every label before it; this only spares the
    same check after each answer. A process that stops first loses the call, as a broker outage
    would: the next changed label asks again."""
    with _pending_lock:
        if project_id in _pending:
            return
        _pending.add(project_id)
    timer = threading.Timer(EMIT_DELAY, _emit_now, args=(project_id,))
    timer.daemon = True
    timer.start()


def _emit_now(project_id: int) -> None:
    from django.db import connection

    from labeling import events

    with _pending_lock:
        _pending.discard(project_id)
    try:
        events.emit_labels_finalized(project_id)  # autocommit in this thread: the listeners run now
    except Exception:  # the labels are safe; the next changed label asks again
        logger.exception("labels_finalized listeners failed for project %s", project_id)
    finally:
        connection.close()  # this thread's own connection


def wrap(django_app: Any) -> Any:
    """The WSGI application: the fast path in front of ``django_app`` (PostgreSQL only). Typed
    Any because it stands in for Django's WSGIHandler where that is expected."""
    from django.db import connection

    if not ENABLED or connection.vendor != "postgresql":
        return django_app

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not path.startswith("/api/"):
            return django_app(environ, start_response)
        key_hash = _token_hash(environ)
        if key_hash is None:
            return django_app(environ, start_response)
        now = datetime.now(UTC)
        try:
            if match := NEXT_PATH.fullmatch(path):
                body = _next(int(match.group(1)), key_hash, now)
                if body is not None:
                    return _respond(start_response, "200 OK", body)
            elif match := ANSWER_PATH.fullmatch(path):
                parsed = _answer_input(environ)
                if parsed is not None:
                    raw, label, duration = parsed
                    environ["wsgi.input"] = io.BytesIO(raw)  # for Django, if it answers after all
                    answered = _answer(int(match.group(1)), key_hash, label, duration, now) if label else None
                    if answered is not None:
                        return _respond(start_response, "201 Created", answered)
        except Exception:
            # Django answers instead (and reports the error as it would); a broken connection is
            # dropped so that it reconnects.
            connection.close_if_unusable_or_obsolete()
        return django_app(environ, start_response)

    return application
