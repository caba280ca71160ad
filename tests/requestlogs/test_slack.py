"""Slack alerts, posted to a real HTTP server on loopback: the message and one try at sending it.

What matters to people: the right alert arrives with what a manager needs to act, each kind
can be switched off, and Slack being slow, broken or gone is an error to retry, never a crash
(the retries, and the request never waiting on Slack: tests/requestlogs/test_alerts.py).
"""

import dataclasses
import socket
import time

import pytest

from config.models import SystemConfig
from config.selectors import ConfigSnapshot
from devtools.slack_server import WEBHOOK_PATH
from requestlogs.models import RequestLog, RequestStatus
from requestlogs.slack import AlertKind, slack_message_build, slack_post, slack_webhook_for
from routing.selectors import route_catalog_get
from tests.requestlogs.factories import RequestLogFactory, UserFactory
from tests.routing.factories import EmergencyRouteFactory

pytestmark = pytest.mark.django_db

SWITCHES = {
    AlertKind.EMERGENCY: "slack_on_emergency",
    AlertKind.FAILURE: "slack_on_failure",
    AlertKind.NEGATIVE_FEEDBACK: "slack_on_negative_feedback",
    AlertKind.ESCALATION: "slack_on_escalation",
}
HEADERS = {
    AlertKind.EMERGENCY: ":rotating_light: Emergency",
    AlertKind.FAILURE: ":warning: Assistant failure",
    AlertKind.NEGATIVE_FEEDBACK: ":thumbsdown: Not helpful",
    AlertKind.ESCALATION: ":raising_hand: Escalated",
}


def config_for(url: str, **changes) -> ConfigSnapshot:
    return dataclasses.replace(
        ConfigSnapshot.from_model(SystemConfig()), slack_webhook_url=url, **changes
    )


def deliver(*, kind: AlertKind, log: RequestLog, config: ConfigSnapshot, detail: str = ""):
    """One try, as the worker makes it: None when this kind goes nowhere, else whether Slack
    took it."""
    url = slack_webhook_for(kind, config)
    if url is None:
        return None
    return slack_post(url, slack_message_build(kind=kind, log=log, detail=detail)) == ""


def all_text(message: dict) -> str:
    """Every piece of text in the message, the way a reader sees it all."""
    parts = [message["text"]]
    for block in message["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts += [f["text"] for f in block.get("fields", [])]
        parts += [e["text"] for e in block.get("elements", [])]
    return "\n".join(parts)


@pytest.fixture
def emergency_log() -> RequestLog:
    return RequestLogFactory(
        user=UserFactory(username="maya.chen"),
        route=EmergencyRouteFactory(name="Emergency", slug="safety-bedford"),
        location="Bedford",
        text="Smoke coming out of the projector in bay 2",
        status=RequestStatus.RECEIVED,
        confidence=0.97,
        answer="",
    )


def test_emergency_alert_arrives_with_what_a_manager_needs(slack_server, emergency_log):
    sent = deliver(kind=AlertKind.EMERGENCY, log=emergency_log, config=config_for(slack_server.url))

    assert sent is True
    [message] = slack_server.wait_for_posts(1)
    assert slack_server.paths == [WEBHOOK_PATH]
    header = message["blocks"][0]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": ":rotating_light: Emergency", "emoji": True},
    }
    assert "Emergency at Bedford: Smoke coming out of the projector in bay 2" in message["text"]
    fields = [f["text"] for f in message["blocks"][1]["fields"]]
    assert fields[0] == "*Route*\nEmergency (`safety-bedford`) · 97%"
    assert fields[1] == "*Location*\nBedford"
    assert fields[2] == "*Who*\nmaya.chen"
    assert fields[3] == "*Status*\nReceived"
    assert fields[4].startswith(f"*When*\n<!date^{int(emergency_log.created_at.timestamp())}^")
    text = all_text(message)
    assert ">Smoke coming out of the projector in bay 2" in text
    assert f"Request `{emergency_log.pk}`" in text


@pytest.mark.parametrize(("kind", "header"), HEADERS.items())
def test_each_kind_has_its_own_header(slack_server, kind, header):
    log = RequestLogFactory()

    sent = deliver(kind=kind, log=log, config=config_for(slack_server.url))

    assert sent is True
    [message] = slack_server.wait_for_posts(1)
    assert message["blocks"][0]["text"]["text"] == header


def test_failure_alert_says_what_went_wrong(slack_server):
    log = RequestLogFactory(status=RequestStatus.TIMEOUT, error="timeout: no answer in 15.0 s")

    deliver(kind=AlertKind.FAILURE, log=log, config=config_for(slack_server.url))

    text = all_text(slack_server.wait_for_posts(1)[0])
    assert "*Error*\ntimeout: no answer in 15.0 s" in text
    assert "*Status*\nTimeout" in text


def test_negative_feedback_alert_quotes_comment_and_answer(slack_server):
    log = RequestLogFactory(feedback_helpful=False)

    deliver(
        kind=AlertKind.NEGATIVE_FEEDBACK,
        log=log,
        config=config_for(slack_server.url),
        detail="Power-cycling did nothing, bay still down",
    )

    text = all_text(slack_server.wait_for_posts(1)[0])
    assert "*Comment*\nPower-cycling did nothing, bay still down" in text
    assert "*Answer given*\n1. Restart the TrackMan Performance Studio app" in text


def test_request_text_is_truncated_and_cannot_ping_the_channel(slack_server):
    log = RequestLogFactory(text="<!channel> " + "the sensor keeps dropping the ball data " * 40)

    deliver(kind=AlertKind.ESCALATION, log=log, config=config_for(slack_server.url))

    message = slack_server.wait_for_posts(1)[0]
    request_block = message["blocks"][2]["text"]["text"]
    assert request_block.startswith("*Request*\n>&lt;!channel&gt; the sensor")
    assert len(request_block) < 560
    assert request_block.endswith("…")
    assert "<!channel>" not in all_text(message)


@pytest.mark.parametrize("kind", list(AlertKind))
def test_a_switched_off_kind_sends_nothing(slack_server, kind):
    log = RequestLogFactory()
    config = config_for(slack_server.url, **{SWITCHES[kind]: False})

    assert deliver(kind=kind, log=log, config=config) is None

    # Every other kind still goes out; only those arrive.
    others = [k for k in AlertKind if k is not kind]
    assert [deliver(kind=k, log=log, config=config) for k in others] == [True] * 3
    headers = {m["blocks"][0]["text"]["text"] for m in slack_server.wait_for_posts(3)}
    assert len(slack_server.posts) == 3
    assert headers == {HEADERS[k] for k in others}


def test_no_webhook_sends_nothing(settings):
    settings.SLACK_WEBHOOK_URL = ""
    config = ConfigSnapshot.from_model(SystemConfig())

    assert deliver(kind=AlertKind.EMERGENCY, log=RequestLogFactory(), config=config) is None


def test_environment_webhook_is_used_when_config_has_none(slack_server, settings):
    settings.SLACK_WEBHOOK_URL = slack_server.url
    config = ConfigSnapshot.from_model(SystemConfig(slack_webhook_url=""))

    sent = deliver(kind=AlertKind.ESCALATION, log=RequestLogFactory(), config=config)

    assert sent is True
    assert len(slack_server.wait_for_posts(1)) == 1


def test_building_and_sending_costs_no_queries_once_the_row_is_loaded(
    slack_server, emergency_log, django_assert_num_queries
):
    # The worker loads the request with its route and user; nothing is left to fetch.
    with django_assert_num_queries(0):
        sent = deliver(
            kind=AlertKind.EMERGENCY, log=emergency_log, config=config_for(slack_server.url)
        )
    assert sent is True


def test_route_is_named_from_the_catalog_when_the_log_has_only_its_id(slack_server):
    route = EmergencyRouteFactory(name="Emergency", slug="safety-truro")
    log = RequestLog.objects.get(pk=RequestLogFactory(route=route).pk)  # route not loaded
    log.user = None
    route_catalog_get()  # warm, as on the request path

    deliver(kind=AlertKind.EMERGENCY, log=log, config=config_for(slack_server.url))

    fields = slack_server.wait_for_posts(1)[0]["blocks"][1]["fields"]
    assert fields[0]["text"].startswith("*Route*\nEmergency (`safety-truro`)")
    assert fields[2]["text"] == "*Who*\nanonymous"


# --- Slack misbehaving is a failed try (retried by the task), never an exception ---------


def test_server_error_resolves_to_false(slack_server, caplog):
    slack_server.mode = "error"

    sent = deliver(
        kind=AlertKind.FAILURE, log=RequestLogFactory(), config=config_for(slack_server.url)
    )

    assert sent is False
    assert "HTTP 500" in caplog.text
    assert slack_server.url not in caplog.text  # the webhook URL is a secret


def test_hanging_slack_resolves_to_false_within_the_timeout(slack_server):
    slack_server.mode = "hang"
    started = time.monotonic()

    sent = deliver(
        kind=AlertKind.EMERGENCY, log=RequestLogFactory(), config=config_for(slack_server.url)
    )

    assert sent is False
    assert len(slack_server.wait_for_posts(1)) == 1
    assert time.monotonic() - started < 3.5  # gave up on its own, well before the hang ends


def test_closed_port_resolves_to_false_quickly():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()

    sent = deliver(
        kind=AlertKind.ESCALATION,
        log=RequestLogFactory(),
        config=config_for(f"http://127.0.0.1:{port}/services/T/B/X"),
    )

    assert sent is False
    assert time.monotonic() - started < 2.0
