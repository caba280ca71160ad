"""The request log's writes after a request's answer: feedback, escalation, re-labelling a
misrouted request, and marking the rows a killed process left unfinished.

A request itself is accepted and answered by ``requestlogs.pipeline``.
"""

import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from config.selectors import ConfigSnapshot, system_config_get
from requestlogs.models import RequestLog, RequestStatus
from requestlogs.slack import AlertKind, slack_alert_submit, slack_alerts_wait
from requestlogs.validation import COMMENT_MAX_CHARS
from routing.models import Route
from routing.services import route_utterance_add

logger = logging.getLogger(__name__)

SLACK_WAIT_S = 2.0


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
        config = config or system_config_get()
        transaction.on_commit(
            lambda: slack_alerts_wait(
                [
                    slack_alert_submit(
                        kind=AlertKind.NEGATIVE_FEEDBACK, log=log, config=config, detail=comment
                    )
                ],
                timeout_s=SLACK_WAIT_S,
            )
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
    config = system_config_get()
    transaction.on_commit(
        lambda: slack_alerts_wait(
            [slack_alert_submit(kind=AlertKind.ESCALATION, log=log, config=config, detail=note)],
            timeout_s=SLACK_WAIT_S,
        )
    )
    return log


@transaction.atomic
def request_log_relabel(*, log: RequestLog, route: Route) -> bool:
    """Record the route a request should have gone to and teach the router with its text.

    Returns whether the text was new to that route's examples. The router retrains on
    the next request of every worker (the route catalog's fingerprint changes).
    """
    log.corrected_route = route
    log.corrected_at = timezone.now()
    log.save(update_fields=["corrected_route", "corrected_at"])
    return route_utterance_add(route=route, text=log.text)


def request_logs_mark_abandoned(*, older_than: timedelta = timedelta(minutes=5)) -> int:
    """Rows still ``received`` long after any deadline belong to a killed process."""
    cutoff = timezone.now() - older_than
    return RequestLog.objects.filter(status=RequestStatus.RECEIVED, created_at__lt=cutoff).update(
        status=RequestStatus.ABANDONED,
        error="the process handling this request stopped before it finished",
        finished_at=timezone.now(),
    )
