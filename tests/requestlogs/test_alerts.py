"""Slack alerts as tasks: what a request records, what the worker sends, and the retries.

The tasks run here as the worker runs them (django-tasks-db's ``Worker.run_task`` on each
due task row), posting to the fake Slack on loopback. A real worker process, killed in the
middle of an alert, is in test_alerts_worker.py.
"""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

from config.selectors import system_config_get
from config.services import system_config_update
from requestlogs.models import Alert, AlertKind, AlertState, RequestLog, RequestStatus
from requestlogs.services import alert_deliver, alert_queue, alerts_requeue_overdue
from tests.requestlogs.factories import RequestLogFactory, UserFactory
from tests.requestlogs.test_api_stream import parse_sse, streamed

pytestmark = pytest.mark.django_db

URL = "/api/v1/requests/"


def run_due_tasks(limit: int = 50) -> int:
    """Run every task that is due, as the worker does; how many ran."""
    worker = Worker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="test-worker",
        excluded_queue_names=[],
    )
    ran = 0
    for _ in range(limit):
        result = DBTaskResult.objects.ready().first()
        if result is None:
            break
        result.claim(worker.worker_id)
        worker.run_task(result)
        ran += 1
    assert not DBTaskResult.objects.failed().exists(), DBTaskResult.objects.failed().first()
    return ran


@pytest.fixture
def slack(slack_server):
    system_config_update(slack_webhook_url=slack_server.url)
    return slack_server


def submit(api_client, text: str, route: str = "auto") -> dict:
    answer = api_client.post(URL, {"text": text, "route": route}, format="json")
    assert answer.status_code == 201, answer.content
    return answer.json()


# --- A submit: the alert is queued, never sent from the request ------------------------


def test_an_emergency_is_queued_with_the_request_and_sent_by_the_worker(api_client, routes, slack):
    body = submit(api_client, "Smoke coming out of the projector in bay 2", route="emergency")

    [alert] = body["alerts"]
    assert alert["kind"] == "emergency"
    assert alert["state"] == "queued"
    assert alert["sent_at"] is None
    assert slack.posts == []  # the request did not wait on Slack

    assert run_due_tasks() == 1

    [message] = slack.wait_for_posts(1)
    assert message["blocks"][0]["text"]["text"] == ":rotating_light: Emergency"
    fields = [f["text"] for f in message["blocks"][1]["fields"]]
    assert fields[0].startswith("*Route*\nEmergency (`emergency`)")  # read from the row
    detail = api_client.get(f"{URL}{body['id']}/").json()
    [alert] = detail["alerts"]
    assert alert["state"] == "sent"
    assert alert["tries"] == 1
    assert alert["sent_at"] is not None


def test_the_streamed_done_event_carries_the_alert_as_queued(api_client, routes, slack):
    response = api_client.post(
        URL,
        {"text": "Water pouring through the ceiling onto bay 5", "route": "emergency"},
        format="json",
        headers={"Accept": "text/event-stream"},
    )

    events = parse_sse(streamed(response))
    name, done = events[-1]
    assert name == "done"
    assert [(a["kind"], a["state"]) for a in done["alerts"]] == [("emergency", "queued")]


def test_an_ordinary_submit_queues_nothing(api_client, routes, slack):
    body = submit(api_client, "TrackMan frozen in bay 3", route="tech")

    assert body["alerts"] == []
    assert not Alert.objects.exists()
    assert not DBTaskResult.objects.exists()


def test_no_webhook_means_no_channel_and_the_person_is_told_to_call(
    api_client, routes, openai_upstream, settings
):
    settings.SLACK_WEBHOOK_URL = ""
    openai_upstream.configure(fail="500")

    body = submit(api_client, "TrackMan frozen in bay 3", route="tech")

    assert body["status"] == RequestStatus.ERROR
    [alert] = body["alerts"]
    assert (alert["kind"], alert["state"]) == ("failure", "no_channel")
    assert "No alert channel is configured: call the manager now." in body["answer"]
    assert "has been alerted" not in body["answer"]
    assert not DBTaskResult.objects.exists()


def test_a_failure_answer_says_the_alert_is_queued(api_client, routes, slack, openai_upstream):
    openai_upstream.configure(fail="500")

    body = submit(api_client, "TrackMan frozen in bay 3", route="tech")

    [alert] = body["alerts"]
    assert (alert["kind"], alert["state"]) == ("failure", "queued")
    assert "A manager alert is queued for Slack." in body["answer"]
    run_due_tasks()
    text = "\n".join(
        b.get("text", {}).get("text", "") for b in slack.wait_for_posts(1)[0]["blocks"]
    )
    assert "*Error*" in text


def test_emergency_then_escalation_are_two_alerts_on_one_request(api_client, routes, slack):
    body = submit(api_client, "Customer collapsed in bay 4", route="emergency")

    escalated = api_client.post(
        f"{URL}{body['id']}/escalate/", {"note": "no answer"}, format="json"
    )

    assert escalated.status_code == 200
    assert [(a["kind"], a["state"]) for a in escalated.json()["alerts"]] == [
        ("emergency", "queued"),
        ("escalation", "queued"),
    ]
    assert run_due_tasks() == 2
    assert {m["blocks"][0]["text"]["text"] for m in slack.wait_for_posts(2)} == {
        ":rotating_light: Emergency",
        ":raising_hand: Escalated",
    }
    listed = api_client.get(URL).json()["results"][0]
    assert [a["state"] for a in listed["alerts"]] == ["sent", "sent"]


def test_not_helpful_feedback_alerts_with_the_comment(api_client, routes, slack):
    body = submit(api_client, "TrackMan frozen in bay 3", route="tech")

    answer = api_client.post(
        f"{URL}{body['id']}/feedback/",
        {"helpful": False, "comment": "Power-cycling did nothing"},
        format="json",
    )

    assert [a["kind"] for a in answer.json()["alerts"]] == ["negative_feedback"]
    run_due_tasks()
    text = str(slack.wait_for_posts(1)[0])
    assert "Power-cycling did nothing" in text


def test_a_switched_off_kind_is_no_channel(slack):
    system_config_update(slack_on_escalation=False)

    alert = alert_queue(
        log=RequestLogFactory(), kind=AlertKind.ESCALATION, config=system_config_get()
    )

    assert alert.state == AlertState.NO_CHANNEL
    assert not DBTaskResult.objects.exists()


# --- Delivery: retries with backoff, at most once per alert ----------------------------


def queued_alert(kind: AlertKind = AlertKind.ESCALATION) -> Alert:
    return alert_queue(log=RequestLogFactory(), kind=kind, config=system_config_get())


def test_slack_failing_is_retried_with_backoff_then_failed(slack, settings):
    slack.mode = "error"
    alert = queued_alert()

    started = timezone.now()
    run_due_tasks()  # the first try; the second is due 1 s later
    alert.refresh_from_db()
    assert (alert.state, alert.tries) == (AlertState.QUEUED, 1)
    assert "HTTP 500" in alert.last_error
    assert timedelta(seconds=0.9) < alert.next_try_at - started < timedelta(seconds=3)
    assert run_due_tasks() == 0  # not due yet

    # The later tries at once (the delays are the next test's), instead of waiting for them.
    settings.SLACK_ALERT_RETRY_DELAYS_S = [0, 0, 0, 0]
    DBTaskResult.objects.filter(status="READY").update(run_after=timezone.now())
    Alert.objects.filter(pk=alert.pk).update(next_try_at=timezone.now())
    run_due_tasks()

    alert.refresh_from_db()
    assert (alert.state, alert.tries) == (AlertState.FAILED, 5)
    assert alert.last_error.startswith("HTTP 500")
    assert len(slack.posts) == 5


def test_the_backoff_grows(slack, settings):
    slack.mode = "error"
    settings.SLACK_ALERT_RETRY_DELAYS_S = [1, 5, 30, 120]
    alert = queued_alert()
    gaps = []
    for _ in range(4):
        before = timezone.now()
        run_due_tasks()
        alert.refresh_from_db()
        gaps.append(round((alert.next_try_at - before).total_seconds()))
        # Bring the next try forward instead of waiting for it.
        DBTaskResult.objects.filter(status="READY").update(run_after=timezone.now())
        Alert.objects.filter(pk=alert.pk).update(next_try_at=timezone.now())
    assert gaps == [1, 5, 30, 120]


def test_slack_recovering_sends_on_the_next_try(slack, settings):
    settings.SLACK_ALERT_RETRY_DELAYS_S = [0, 0, 0, 0]
    slack.mode = "error"
    alert = queued_alert()
    alert_deliver(alert_id=alert.pk)
    slack.mode = "ok"

    run_due_tasks()

    alert.refresh_from_db()
    assert (alert.state, alert.tries, alert.last_error) == (AlertState.SENT, 2, "")


def test_a_task_run_twice_sends_once(slack):
    alert = queued_alert()

    assert alert_deliver(alert_id=alert.pk) is not None
    assert alert_deliver(alert_id=alert.pk) is None

    assert len(slack.wait_for_posts(1)) == 1
    alert.refresh_from_db()
    assert (alert.state, alert.tries) == (AlertState.SENT, 1)


def test_an_alert_whose_worker_died_is_queued_again_by_the_sweep(slack, settings):
    alert = queued_alert()
    # Its try was claimed, then its worker died: the task row says running, forever.
    DBTaskResult.objects.update(status="RUNNING")
    Alert.objects.filter(pk=alert.pk).update(
        tries=1, next_try_at=timezone.now() - timedelta(seconds=settings.SLACK_ALERT_OVERDUE_S + 1)
    )

    assert alerts_requeue_overdue() == 1
    assert alerts_requeue_overdue() == 0  # taken once, however many sweepers
    run_due_tasks()

    alert.refresh_from_db()
    assert (alert.state, alert.tries) == (AlertState.SENT, 2)


def test_an_alert_that_cannot_be_recorded_is_failed_not_raised(slack):
    log = RequestLog(pk=None)  # no such row: the INSERT's foreign key fails

    alert = alert_queue(log=log, kind=AlertKind.EMERGENCY, config=system_config_get())

    assert alert.state == AlertState.FAILED
    assert alert.last_error.startswith("not queued")


# --- The admin --------------------------------------------------------------------------


def test_the_admin_shows_each_alert_on_its_request_and_filters_by_state(client, slack):
    client.force_login(UserFactory(superuser=True))
    sent, failed = queued_alert(AlertKind.EMERGENCY), queued_alert(AlertKind.FAILURE)
    run_due_tasks()
    Alert.objects.filter(pk=failed.pk).update(
        state=AlertState.FAILED, tries=5, last_error="HTTP 500 internal_error"
    )
    quiet = RequestLogFactory()

    page = client.get(reverse("admin:requestlogs_requestlog_change", args=[failed.request_id]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Failed" in html
    assert "HTTP 500 internal_error" in html
    assert "alerts-0-state" not in html  # read-only: no field to edit

    changelist = reverse("admin:requestlogs_requestlog_changelist")

    def shown(**params: str) -> set:
        answer = client.get(changelist, params)
        assert answer.status_code == 200
        return {log.pk for log in answer.context["cl"].result_list}

    assert shown(alert="failed") == {failed.request_id}
    assert shown(alert="sent") == {sent.request_id}
    assert shown(alert="any") == {sent.request_id, failed.request_id}
    assert quiet.pk in shown()
