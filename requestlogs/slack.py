"""Slack alerts through an incoming webhook, sent without holding up the request.

``slack_alert_submit`` builds the message in the calling thread - every field the message
needs is read from the log there and then, so the worker never touches the database or
a half-updated model - and posts it from a small process-wide thread pool. The caller
gets a future and decides how long the request may wait for it (``slack_alerts_wait``):
the request path never blocks on Slack for longer than it must, and a Slack outage never
fails a request. Nothing here raises into the caller.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from enum import StrEnum
from typing import Any, Final

import httpx2
from django.utils import timezone

from config.selectors import ConfigSnapshot
from requestlogs.models import RequestLog, RequestStatus
from routing.selectors import route_catalog_get

logger = logging.getLogger(__name__)

__all__ = [
    "AlertKind",
    "slack_alert_submit",
    "slack_alerts_wait",
    "slack_message_build",
]

# Slack answers a webhook in well under a second; an alert that takes longer is lost anyway,
# and a stuck worker would delay the alerts queued behind it.
CONNECT_TIMEOUT_S: Final = 1.0
# After connecting, what is left of a 3 s budget for sending the body and reading the answer.
RESPONSE_TIMEOUT_S: Final = 2.0
MAX_WORKERS: Final = 3

TEXT_MAX_CHARS: Final = 500
EXCERPT_MAX_CHARS: Final = 500
# Slack's own limits: a header's plain text and a section field's text.
HEADER_MAX_CHARS: Final = 150
FIELD_MAX_CHARS: Final = 2000


class AlertKind(StrEnum):
    EMERGENCY = "emergency"
    FAILURE = "failure"
    NEGATIVE_FEEDBACK = "negative_feedback"
    ESCALATION = "escalation"


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
_executor: ThreadPoolExecutor | None = None
_client: httpx2.Client | None = None


def _reset_after_fork() -> None:
    # Threads do not survive fork (gunicorn workers); a child builds its own pool.
    global _executor, _client, _lock
    _executor = None
    _client = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _sender() -> tuple[ThreadPoolExecutor, httpx2.Client]:
    global _executor, _client
    with _lock:
        if _executor is None or _client is None:
            _client = httpx2.Client(
                timeout=httpx2.Timeout(
                    RESPONSE_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, pool=CONNECT_TIMEOUT_S
                ),
                limits=httpx2.Limits(
                    max_connections=MAX_WORKERS, max_keepalive_connections=MAX_WORKERS
                ),
                follow_redirects=False,
            )
            _executor = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="slack")
        return _executor, _client


def _post(
    client: httpx2.Client, url: str, payload: dict[str, Any], kind: AlertKind, log_id: str
) -> bool:
    try:
        response = client.post(url, json=payload)
    except Exception as exc:
        # Never log the URL: an incoming-webhook URL is a credential.
        logger.warning(
            "Slack %s alert for request %s not sent: %s: %s", kind, log_id, type(exc).__name__, exc
        )
        return False
    if 200 <= response.status_code < 300:
        return True
    logger.warning(
        "Slack %s alert for request %s refused: HTTP %s %s",
        kind,
        log_id,
        response.status_code,
        response.text[:200],
    )
    return False


def slack_alert_submit(
    *, kind: AlertKind, log: RequestLog, config: ConfigSnapshot, detail: str = ""
) -> Future[bool] | None:
    """Start sending one alert; None when this kind is switched off or no webhook is set.

    The future resolves to True when Slack answered 2xx, False otherwise; it never raises.
    """
    kind = AlertKind(kind)
    if not getattr(config, _SWITCHES[kind]) or not config.slack_webhook_url:
        return None
    try:
        payload = slack_message_build(kind=kind, log=log, detail=detail)
        executor, client = _sender()
        return executor.submit(_post, client, config.slack_webhook_url, payload, kind, str(log.pk))
    except Exception:
        # An alert is never worth failing the request it is about.
        logger.warning("Slack %s alert for request %s not queued", kind, log.pk, exc_info=True)
        return None


def slack_alerts_wait(futures: Iterable[Future[bool] | None], *, timeout_s: float) -> None:
    """Give pending alerts up to ``timeout_s`` to go out; whatever is left keeps sending."""
    try:
        pending = [f for f in futures if f is not None]
        if pending:
            _, not_done = futures_wait(pending, timeout=max(timeout_s, 0.0))
            if not_done:
                logger.info(
                    "%d Slack alert(s) still sending after %.1f s", len(not_done), timeout_s
                )
    except Exception:
        logger.warning("waiting for Slack alerts failed", exc_info=True)
