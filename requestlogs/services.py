"""The request log's writes after a request's answer: feedback, escalation, re-labelling a
misrouted request; its Slack alerts (queued as tasks, delivered with retries); the
sweeps that mark the rows a killed process left unfinished and re-queue its lost alerts;
and retention, which deletes (and may archive) requests past a number of days.

A request itself is accepted and answered by ``requestlogs.pipeline``.
"""

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.audit import AUDIT_SYSTEM
from config.llm import DEFAULT_TIMEOUT_S as LLM_ROUTER_TIMEOUT_S
from config.selectors import ConfigSnapshot, system_config_get
from requestlogs.models import Alert, AlertKind, AlertState, RequestLog, RequestStatus
from requestlogs.slack import slack_message_build, slack_post, slack_webhook_for
from requestlogs.validation import COMMENT_MAX_CHARS
from routing.models import Route
from routing.selectors import route_catalog_get
from routing.services import route_utterance_add

logger = logging.getLogger(__name__)

ABANDONED_ERROR = "the process handling this request stopped before it finished"


# --- Slack alerts ---------------------------------------------------------------------


def alert_queue(
    *,
    log: RequestLog,
    kind: AlertKind,
    config: ConfigSnapshot,
    detail: str = "",
    row_fields: Sequence[str] = (),
) -> Alert:
    """Record an alert about ``log`` and queue its task, in one transaction: both or neither.

    ``row_fields``: columns of the row to write first (what the request has learnt so far,
    e.g. its route), so that the worker builds the message from the row as it is now. The
    alert is ``no_channel`` (and nothing is queued) when its kind is switched off or no
    webhook is set. Never raises: an alert that cannot be recorded (the database gone) is
    returned ``failed``, unsaved, so the person is told to call the manager.
    """
    from requestlogs.tasks import alert_send

    now = timezone.now()
    url = slack_webhook_for(kind, config)
    alert = Alert(
        request_id=log.pk,
        kind=AlertKind(kind),
        detail=detail.strip(),
        state=AlertState.QUEUED if url else AlertState.NO_CHANNEL,
        queued_at=now,
        next_try_at=now if url else None,
    )
    try:
        with transaction.atomic():
            if row_fields:
                log.save(update_fields=list(row_fields))
            alert.save(force_insert=True)
            if url:
                alert_send.enqueue(alert.pk)
    except Exception as exc:
        logger.exception("the %s alert for request %s could not be queued", kind, log.pk)
        alert.pk = None
        alert.state = AlertState.FAILED
        alert.last_error = f"not queued: {type(exc).__name__}"
        alert.next_try_at = None
    return alert


def alert_deliver(*, alert_id: int) -> Alert | None:
    """One try at sending a queued alert (the ``alert_send`` task).

    The try is claimed first (a conditional UPDATE): an alert already sent, or being sent
    by another worker, is left alone, so a task run twice sends once. A failed try is
    queued again after ``SLACK_ALERT_RETRY_DELAYS_S``; after the last one the alert is
    ``failed`` with the last error. Returns the alert, or None if there was nothing to do.
    """
    from requestlogs.tasks import alert_send

    now = timezone.now()
    claimed = Alert.objects.filter(
        pk=alert_id, state=AlertState.QUEUED, next_try_at__lte=now + timedelta(seconds=1)
    ).update(
        tries=F("tries") + 1,
        next_try_at=now + timedelta(seconds=settings.SLACK_ALERT_LEASE_S),
    )
    if not claimed:
        return None
    alert = Alert.objects.select_related("request", "request__route", "request__user").get(
        pk=alert_id
    )
    url = slack_webhook_for(alert.kind, system_config_get())
    try:
        if url is None:
            error = ""  # switched off (or the webhook removed) since it was queued
        else:
            payload = slack_message_build(
                kind=AlertKind(alert.kind), log=alert.request, detail=alert.detail
            )
            what = f"{alert.kind} alert for request {alert.request_id}"
            error = slack_post(url, payload, what=what)
    except Exception as exc:
        # A bug here is a failed try like any other: retried, then recorded, never a loop.
        logger.exception("Slack alert %s could not be built", alert_id)
        error = f"internal error: {type(exc).__name__}: {exc}"
    delays = settings.SLACK_ALERT_RETRY_DELAYS_S
    done = timezone.now()
    with transaction.atomic():
        if url is None:
            alert.state, alert.next_try_at = AlertState.NO_CHANNEL, None
        elif not error:
            alert.state, alert.sent_at, alert.next_try_at = AlertState.SENT, done, None
            alert.last_error = ""
        elif alert.tries > len(delays):
            alert.state, alert.last_error, alert.next_try_at = AlertState.FAILED, error, None
        else:
            alert.last_error = error
            alert.next_try_at = done + timedelta(seconds=delays[alert.tries - 1])
            alert_send.using(run_after=alert.next_try_at).enqueue(alert.pk)
        Alert.objects.filter(pk=alert.pk, state=AlertState.QUEUED).update(
            state=alert.state,
            sent_at=alert.sent_at,
            last_error=alert.last_error,
            next_try_at=alert.next_try_at,
        )
    return alert


def alerts_requeue_overdue() -> int:
    """Queue again every alert still ``queued`` well after its try was due: its worker was
    killed while sending it, or its task was lost. Safe with any number of sweepers: each
    alert is taken by one conditional UPDATE, in the transaction that queues its task."""
    from requestlogs.tasks import alert_send

    now = timezone.now()
    overdue = now - timedelta(seconds=settings.SLACK_ALERT_OVERDUE_S)
    count = 0
    for pk, due in Alert.objects.filter(
        state=AlertState.QUEUED, next_try_at__lt=overdue
    ).values_list("pk", "next_try_at")[:500]:
        with transaction.atomic():
            if Alert.objects.filter(pk=pk, state=AlertState.QUEUED, next_try_at=due).update(
                next_try_at=now
            ):
                alert_send.enqueue(pk)
                count += 1
    if count:
        logger.warning("%d overdue Slack alert(s) queued again", count)
    return count


# --- After the answer -----------------------------------------------------------------


@transaction.atomic
def request_feedback_set(
    *, log: RequestLog, helpful: bool, comment: str = "", config: ConfigSnapshot | None = None
) -> RequestLog:
    comment = (comment or "").strip()
    if len(comment) > COMMENT_MAX_CHARS:
        raise ValidationError(
            {"comment": [f"Keep the comment under {COMMENT_MAX_CHARS} characters."]}
        )
    log.feedback_helpful = helpful
    log.feedback_comment = comment
    log.feedback_at = timezone.now()
    log.save(update_fields=["feedback_helpful", "feedback_comment", "feedback_at"])
    if not helpful:
        alert_queue(
            log=log,
            kind=AlertKind.NEGATIVE_FEEDBACK,
            config=config or system_config_get(),
            detail=comment,
        )
    return log


@transaction.atomic
def request_escalate(*, log: RequestLog, note: str = "") -> RequestLog:
    """Hand a request to a human: status ``escalated`` and a Slack alert, once."""
    if log.escalated:
        return log
    log.escalated = True
    log.escalated_at = timezone.now()
    log.status = RequestStatus.ESCALATED
    log.save(update_fields=["escalated", "escalated_at", "status"])
    alert_queue(log=log, kind=AlertKind.ESCALATION, config=system_config_get(), detail=note)
    return log


@transaction.atomic
def request_log_relabel(
    *,
    log: RequestLog,
    route: Route,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    via: str = AUDIT_SYSTEM,
) -> bool:
    """Record the route a request should have gone to and teach the router with its text.

    Returns whether the text was new to that route's examples. The router retrains on
    the next request of every worker (the route catalog's fingerprint changes).
    """
    log.corrected_route = route
    log.corrected_at = timezone.now()
    log.save(update_fields=["corrected_route", "corrected_at"])
    return route_utterance_add(route=route, text=log.text, actor=actor, via=via)


# --- Sweeps (the task worker runs them every TASKS_SWEEP_INTERVAL_S) --------------------


def request_logs_abandoned_after() -> timedelta:
    """How old a ``received`` row must be before no live request can own it: the longest a
    request can take (the LLM router's timeout, then the longest assistant deadline, its own
    or any route's) plus ``REQUEST_ABANDONED_MARGIN_S``."""
    deadlines = [system_config_get().assistant_timeout_s]
    deadlines += [r.timeout_s for r in route_catalog_get().routes if r.timeout_s]
    longest = LLM_ROUTER_TIMEOUT_S + max(deadlines) + settings.REQUEST_ABANDONED_MARGIN_S
    return timedelta(seconds=longest)


def request_logs_mark_abandoned(*, older_than: timedelta | None = None) -> int:
    """Rows still ``received`` long after any deadline belong to a killed process: one
    UPDATE, so any number of servers and workers may run it at once."""
    now = timezone.now()
    cutoff = now - (older_than if older_than is not None else request_logs_abandoned_after())
    return RequestLog.objects.filter(status=RequestStatus.RECEIVED, created_at__lt=cutoff).update(
        status=RequestStatus.ABANDONED, error=ABANDONED_ERROR, finished_at=now
    )


# --- Retention (the task worker's sweep, once an interval; `manage.py purge_request_logs`) --

# Younger requests may still be running or about to get feedback: never deleted.
RETENTION_MIN_DAYS = 1.0
# A century: the cutoff stays a date (a million days before now is none, an OverflowError).
RETENTION_MAX_DAYS = 36_525.0
# Each batch is one transaction holding its rows' locks; a batch size the database's LIMIT
# cannot take (beyond a 64-bit integer) failed with an IntegrityError or a DataError.
RETENTION_MAX_BATCH = 100_000
# The worker's scheduled run spends at most this long per sweep round (plus one batch), so
# the other sweeps keep their 10 s rhythm while a backlog is worked off round by round.
RETENTION_SWEEP_BUDGET_S = 5.0
RETENTION_LEASE_KEY = "requestlogs:retention:lease"


@dataclass(frozen=True, slots=True)
class PurgeProgress:
    """Where a purge stands: after each batch, and at its end."""

    cutoff: datetime
    batches: int
    requests: int  # deleted (or, in a dry run, that would be)
    alerts: int
    elapsed_s: float
    finished: bool = False  # nothing older than the cutoff is left

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _archive_write(archive: IO[str], pks: list[Any]) -> None:
    # One JSON object per request, its alerts inside it: what was deleted, restorable.
    alerts: defaultdict[Any, list[dict[str, Any]]] = defaultdict(list)
    for alert in Alert.objects.filter(request_id__in=pks).order_by("pk").values():
        alerts[alert["request_id"]].append(dict(alert))
    for row in RequestLog.objects.filter(pk__in=pks).order_by("created_at").values():
        line = {**row, "alerts": alerts.get(row["id"], [])}
        archive.write(json.dumps(line, cls=DjangoJSONEncoder) + "\n")
    archive.flush()


def request_logs_delete_older_than(
    *,
    days: float,
    batch_size: int = 1000,
    dry_run: bool = False,
    archive: IO[str] | None = None,
    max_seconds: float | None = None,
    pause_s: float = 0.0,
    progress: Callable[[PurgeProgress], None] | None = None,
) -> PurgeProgress:
    """Delete the requests older than ``days`` days, with their alerts, oldest first.

    Each batch of ``batch_size`` rows is its own short transaction: its primary keys taken
    from the ``created_at`` index with ``FOR UPDATE SKIP LOCKED`` (a row someone is writing
    is left for the next run, never waited for), written to ``archive`` if given (JSON
    lines, before the delete: a failed write deletes nothing), then deleted. Only those
    rows are locked: requests being inserted and answered meanwhile never wait on a purge.
    ``max_seconds`` stops after the batch that reaches it (``finished`` False: more is
    left); ``pause_s`` sleeps between batches to spread the load. ``progress`` is called
    after each batch. A dry run only counts.
    """
    # Written so that NaN, which fails every comparison, is refused too.
    if not days >= RETENTION_MIN_DAYS:
        raise ValueError(
            f"days must be at least {RETENTION_MIN_DAYS:g}: younger requests may still be running"
        )
    if days > RETENTION_MAX_DAYS:
        raise ValueError(f"days must be at most {RETENTION_MAX_DAYS:,g} (a century)")
    if not 1 <= batch_size <= RETENTION_MAX_BATCH:
        raise ValueError(f"batch_size must be from 1 to {RETENTION_MAX_BATCH:,}")
    started = time.monotonic()
    cutoff = timezone.now() - timedelta(days=days)
    old = RequestLog.objects.filter(created_at__lt=cutoff)
    if dry_run:
        return PurgeProgress(
            cutoff=cutoff,
            batches=0,
            requests=old.count(),
            alerts=Alert.objects.filter(request__created_at__lt=cutoff).count(),
            elapsed_s=time.monotonic() - started,
            finished=True,
        )
    batches = requests = alerts = 0
    finished = False
    while True:
        with transaction.atomic():
            pks = list(
                old.order_by("created_at")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:batch_size]
            )
            if pks:
                if archive is not None:
                    _archive_write(archive, pks)
                _, deleted = RequestLog.objects.filter(pk__in=pks).only("pk").delete()
        if not pks:
            finished = True
            break
        batches += 1
        requests += deleted.get(RequestLog._meta.label, 0)
        alerts += deleted.get(Alert._meta.label, 0)
        elapsed = time.monotonic() - started
        if progress is not None:
            progress(PurgeProgress(cutoff, batches, requests, alerts, elapsed))
        if max_seconds is not None and elapsed >= max_seconds:
            break
        if pause_s > 0:
            time.sleep(pause_s)
    return PurgeProgress(cutoff, batches, requests, alerts, time.monotonic() - started, finished)


def request_logs_retention_sweep() -> PurgeProgress | None:
    """The task worker's scheduled retention: ``REQUEST_LOG_RETENTION_DAYS`` (0: off), run by
    one worker per ``REQUEST_LOG_RETENTION_INTERVAL_S``, however many run.

    The worker that takes the lease in the shared cache (an atomic add that expires after the
    interval) runs it; the others skip it. A run that did not finish within its time budget
    gives the lease back, so the next sweep round (any worker's) carries on. With the cache
    unavailable it runs without the lease: a purge run twice at once deletes each row once.
    Returns what was done, or None when it was not this worker's turn (or retention is off).
    """
    days = settings.REQUEST_LOG_RETENTION_DAYS
    if days <= 0:
        return None
    try:
        leased = cache.add(
            RETENTION_LEASE_KEY,
            "taken",
            timeout=max(1, int(settings.REQUEST_LOG_RETENTION_INTERVAL_S)),
        )
    except Exception:
        logger.warning("cache unavailable; request log retention runs without its lease")
        leased = True
    if not leased:
        return None
    result = request_logs_delete_older_than(
        days=days,
        batch_size=settings.REQUEST_LOG_RETENTION_BATCH,
        max_seconds=RETENTION_SWEEP_BUDGET_S,
    )
    if result.requests:
        logger.info(
            "retention: %d request(s) and %d alert(s) older than %s deleted (%.0f/s)%s",
            result.requests,
            result.alerts,
            result.cutoff.isoformat(timespec="seconds"),
            result.requests_per_s,
            "" if result.finished else "; more left for the next round",
        )
    if not result.finished:
        try:
            cache.delete(RETENTION_LEASE_KEY)
        except Exception:
            logger.warning("cache unavailable; the retention backlog waits for the lease to expire")
    return result
