"""A real task worker, SIGKILLed in the middle of sending an alert: the alert still arrives.

The fake Slack holds the first post open (as a slow Slack would), the worker is killed while
it waits, and a worker started afterwards sends the alert: the alert's row said ``queued``
with its try overdue, and the sweep queued it again.
"""

import pytest

from config.selectors import system_config_get
from config.services import system_config_update
from requestlogs.models import Alert, AlertKind, AlertState
from requestlogs.services import alert_queue
from tests.requestlogs.factories import RequestLogFactory
from tests.requestlogs.processes import kill, start_worker, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# Short lease and sweep, so that the test takes seconds; production: 10 s each.
WORKER_ENV = {
    "TASKS_WORKER_INTERVAL_S": "0.1",
    "TASKS_SWEEP_INTERVAL_S": "0.5",
    "SLACK_ALERT_LEASE_S": "2",
    "SLACK_ALERT_OVERDUE_S": "0.5",
}


def state_of(alert: Alert) -> str:
    alert.refresh_from_db()
    return alert.state


def test_an_alert_survives_its_worker_being_killed_mid_send(slack_server):
    slack_server.mode = "hang"  # the first try is held until the worker dies
    system_config_update(slack_webhook_url=slack_server.url)
    log = RequestLogFactory(text="Smoke coming out of the projector in bay 2")
    alert = alert_queue(log=log, kind=AlertKind.EMERGENCY, config=system_config_get())
    assert alert.state == AlertState.QUEUED

    first = start_worker(**WORKER_ENV)
    try:
        wait_for(lambda: slack_server.posts, timeout_s=60, what="the first try to reach Slack")
        assert state_of(alert) == AlertState.QUEUED
    finally:
        kill(first)

    slack_server.mode = "ok"
    second = start_worker(**WORKER_ENV)
    try:
        waited = wait_for(
            lambda: state_of(alert) == AlertState.SENT, timeout_s=60, what="the alert to be sent"
        )
    finally:
        stop(second)

    assert waited < 30
    assert alert.tries == 2
    assert alert.sent_at is not None
    posts = slack_server.wait_for_posts(2)
    assert len(posts) == 2  # the held try, and the one that went through
    assert posts[1]["blocks"][0]["text"]["text"] == ":rotating_light: Emergency"
    assert "Smoke coming out of the projector" in posts[1]["text"]
