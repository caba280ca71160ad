"""Slack alerts through an incoming webhook: the message, and one try at posting it.

An alert is a task (``requestlogs.tasks.alert_send``): the worker reads the request's row,
builds the message here (``slack_message_build``) and posts it (``slack_post``); the retries,
their backoff and the alert's recorded state are ``requestlogs.services.alert_deliver``'s.
Nothing here raises into the caller.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Final

import httpx2
from django.utils import timezone

from config.selectors import ConfigSnapshot
from requestlogs.models import AlertKind, RequestLog, RequestStatus
from routing.selectors import route_catalog_get

logger = logging.getLogger(__name__)

__all__ = [
    "AlertKind",
    "slack_message_build",
    "slack_post",
    "slack_webhook_for",
]

# Slack answers a webhook in well under a second; an alert that takes longer is lost anyway,
# and a stuck worker would delay the alerts queued behind it.
CONNECT_TIMEOUT_S: Final = 1.0
# After connecting, what is left of a 3 s budget for sending the body and reading the answer.
RESPONSE_TIMEOUT_S: Final = 2.0
MAX_CONNECTIONS: Final = 3

TEXT_MAX_CHARS: Final = 500
EXCERPT_MAX_CHARS: Final = 500
# Slack's own limits: a header's plain text and a section field's text.
HEADER_MAX_CHARS: Final = 150
FIELD_MAX_CHARS: Final = 2000


# Which ConfigSnapshot switch turns each kind on.
_SWITCHES: Final[dict[AlertKind, str]] = {
    AlertKind.EMERGENCY: "slack_on_emergency",
    AlertKind.FAILURE: "slack_on_failure",
    AlertKind.NEGATIVE_FEEDBACK: "slack_on_negative_feedback",
    AlertKind.ESCALATION: "slack_on_escalation",
}

_HEADERS: Final[dict[AlertKind, str]] = {
    AlertKind.EMERGENCY: ":rotating_light: Emergency",
    AlertKind.FAILURE: ":warning: Assistant failure",
    AlertKind.NEGATIVE_FEEDBACK: ":thumbsdown: Not helpful",
    AlertKind.ESCALATION: ":raising_hand: Escalated",
}

# What the second block says about ``detail`` for each kind.
_DETAIL_LABELS: Final[dict[AlertKind, str]] = {
    AlertKind.EMERGENCY: "Note",
    AlertKind.FAILURE: "Error",
    AlertKind.NEGATIVE_FEEDBACK: "Comment",
    AlertKind.ESCALATION: "Note",
}


# --- The message ----------------------------------------------------------------------


def _escape(text: str) -> str:
    """Slack's mrkdwn escaping: request text must never become a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _route_label(log: RequestLog) -> str:
    # The request path knows its route as a cached snapshot, not as a loaded model; the
    # catalog (a cache read) names it without a database query.
    if RequestLog.route.is_cached(log) and log.route is not None:
        return f"{log.route.name} (`{log.route.slug}`)"
    if log.route_id is None:
        return "not routed yet"
    snapshot = route_catalog_get().by_id(log.route_id)
    return f"{snapshot.name} (`{snapshot.slug}`)" if snapshot else f"route #{log.route_id}"


def _who(log: RequestLog) -> str:
    if log.user_id is None:
        return "anonymous"
    try:
        return log.user.get_username() if log.user is not None else "anonymous"
    except Exception:
        # A user deleted under us is not worth losing the alert over.
        return f"user #{log.user_id}"


def _when(log: RequestLog) -> str:
    if log.created_at is None:
        return "unknown"
    fallback = timezone.localtime(log.created_at).strftime("%Y-%m-%d %H:%M:%S %Z")
    # Slack renders the date token in each reader's own time zone.
    return (
        f"<!date^{int(log.created_at.timestamp())}^{{date_short_pretty}} {{time_secs}}|{fallback}>"
    )


def slack_message_build(*, kind: AlertKind, log: RequestLog, detail: str = "") -> dict[str, Any]:
    """The webhook payload for one alert: a plain ``text`` fallback plus ``blocks``."""
    kind = AlertKind(kind)
    header = _HEADERS[kind]
    route = _route_label(log)
    status = RequestStatus(log.status).label if log.status in RequestStatus.values else log.status
    if log.confidence is not None:
        route = f"{route} · {log.confidence:.0%}"
    request_text = _escape(_truncate(log.text or "", TEXT_MAX_CHARS))

    fields = [
        ("Route", route),
        ("Location", _escape(log.location) or "not given"),
        ("Who", _escape(_who(log))),
        ("Status", status),
        ("When", _when(log)),
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": header[:HEADER_MAX_CHARS], "emoji": True},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _truncate(f"*{name}*\n{value}", FIELD_MAX_CHARS)}
                for name, value in fields
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Request*\n>{request_text}"}},
    ]

    notes: list[str] = []
    detail = detail.strip() or (log.error.strip() if kind is AlertKind.FAILURE else "")
    if detail:
        label = _DETAIL_LABELS[kind]
        notes.append(f"*{label}*\n{_escape(_truncate(detail, EXCERPT_MAX_CHARS))}")
    if log.answer and log.answer.strip() and kind is not AlertKind.FAILURE:
        notes.append(f"*Answer given*\n{_escape(_truncate(log.answer, EXCERPT_MAX_CHARS))}")
    blocks.extend({"type": "section", "text": {"type": "mrkdwn", "text": note}} for note in notes)
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Request `{log.pk}`"}]}
    )

    summary = _escape(_truncate(log.text or "", 150))
    plain_header = header.split(" ", 1)[-1]
    text = f"{plain_header} at {_escape(log.location) or 'unknown location'}: {summary}"
    return {"text": text, "blocks": blocks}


# --- Sending --------------------------------------------------------------------------

_lock = threading.Lock()
_client: httpx2.Client | None = None


def _reset_after_fork() -> None:
    # A connection pool does not survive fork: a child process builds its own.
    global _client, _lock
    _client = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _http() -> httpx2.Client:
    global _client
    with _lock:
        if _client is None:
            _client = httpx2.Client(
                timeout=httpx2.Timeout(
                    RESPONSE_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, pool=CONNECT_TIMEOUT_S
                ),
                limits=httpx2.Limits(
                    max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
                ),
                follow_redirects=False,
            )
        return _client


def slack_webhook_for(kind: AlertKind | str, config: ConfigSnapshot) -> str | None:
    """Where this kind of alert goes; None when the kind is switched off or no webhook is set."""
    if not getattr(config, _SWITCHES[AlertKind(kind)]) or not config.slack_webhook_url:
        return None
    return config.slack_webhook_url


def slack_post(url: str, payload: dict[str, Any], *, what: str = "alert") -> str:
    """Post one message: "" when Slack answered 2xx, otherwise what went wrong. Never raises."""
    try:
        response = _http().post(url, json=payload)
    except Exception as exc:
        # Never log the URL: an incoming-webhook URL is a credential.
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        logger.warning("Slack %s not sent: %s", what, error)
        return error.replace(url, "<webhook>")
    if 200 <= response.status_code < 300:
        return ""
    error = f"HTTP {response.status_code} {response.text[:200]}".strip()
    logger.warning("Slack %s refused: %s", what, error)
    return error
