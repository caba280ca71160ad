"""A real task worker, SIGKILLed in the middle of sending an alert: the alert still arrives.

The fake Slack holds the first post open (as a slow Slack would), the worker is killed while
it waits, and a worker started afterwards sends the alert: the alert's row said ``queued``
with its try overdue, and the sweep queued it again.
"""

import time

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


def test_the_worker_rides_out_a_database_outage_and_sends_what_was_queued_during_it(
    slack_server,
):
    from django.db import connection

    from devtools.tcp_proxy import TcpProxy
    from tests.requestlogs.processes import database_url

    if connection.vendor != "postgresql":
        pytest.skip("the database is cut through a TCP proxy: PostgreSQL's connection")
    db = connection.settings_dict
    real = (db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    system_config_update(slack_webhook_url=slack_server.url)
    proxy = TcpProxy(target=real).start()
    through_proxy = database_url().replace(f"@{real[0]}:{real[1]}/", f"@127.0.0.1:{proxy.port}/")
    worker = start_worker(DATABASE_URL=through_proxy, **WORKER_ENV)
    try:
        before = alert_queue(
            log=RequestLogFactory(), kind=AlertKind.EMERGENCY, config=system_config_get()
        )
        wait_for(lambda: state_of(before) == AlertState.SENT, timeout_s=60, what="a first alert")

        proxy.cut("reset")
        # Queued while the worker cannot reach the database (the app's own connection can).
        during = alert_queue(
            log=RequestLogFactory(), kind=AlertKind.ESCALATION, config=system_config_get()
        )
        time.sleep(5)
        assert worker.poll() is None, "the worker ended with the database out of reach"
        assert state_of(during) == AlertState.QUEUED
        proxy.restore()

        waited = wait_for(
            lambda: state_of(during) == AlertState.SENT, timeout_s=30, what="the queued alert"
        )
    finally:
        stop(worker)
        proxy.stop()

    assert waited < 15
    assert len(slack_server.wait_for_posts(2)) == 2
