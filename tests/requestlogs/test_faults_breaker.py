"""The circuit breaker always closes again (issue 13): a half-open trial call that ends with
no verdict on the model (its client left, it was cancelled, it was refused) lets the next
request try, over real HTTP against the fake upstream."""

import threading
import time

import httpx2
import pytest

from assistants.breaker import CircuitBreaker, breaker_for
from requestlogs.models import RequestLog, RequestStatus
from tests.requestlogs.api_factories import token_header

URL = "/api/v1/requests/"
COOLDOWN_S = 1.5


@pytest.fixture
def short_cooldown(settings):
    settings.ASSISTANT_BREAKER_THRESHOLD = 5
    settings.ASSISTANT_BREAKER_COOLDOWN_S = COOLDOWN_S


def submit(http: httpx2.Client, url: str, user, text: str) -> dict:
    response = http.post(
        f"{url}{URL}",
        json={"text": text, "route": "tech"},
        headers={"Authorization": token_header(user)},
    )
    assert response.status_code == 201, response.text
    return response.json()


def open_the_breaker(http: httpx2.Client, url: str, user, upstream) -> None:
    upstream.configure(fail="500")
    for n in range(4):
        body = submit(http, url, user, f"TrackMan frozen in bay {n}")
        assert body["status"] == "error"
    assert breaker_for("openai-responses").is_open


@pytest.mark.django_db(transaction=True)
def test_a_trial_call_whose_client_leaves_does_not_keep_the_breaker_open(
    short_cooldown, asgi_live_server, routes, user, openai_upstream
):
    url = asgi_live_server.url
    with httpx2.Client(timeout=30) as http:
        open_the_breaker(http, url, user, openai_upstream)
        # Healed, but slow to start answering; past the cooldown the next call is the trial.
        openai_upstream.configure(fail=None, ttft_s=5.0, latency_s=5.5)
        time.sleep(COOLDOWN_S + 0.3)

        def leave_after_1s() -> None:
            with (
                httpx2.Client(timeout=10) as own,
                own.stream(
                    "POST",
                    f"{url}{URL}",
                    json={"text": "Projector dark in bay 7 (trial)", "route": "tech"},
                    headers={"Authorization": token_header(user), "Accept": "text/event-stream"},
                ) as response,
            ):
                assert response.status_code == 201
                time.sleep(1.0)  # closed here: the client leaves mid-trial

        leaver = threading.Thread(target=leave_after_1s)
        leaver.start()
        leaver.join()
        openai_upstream.configure(ttft_s=0.02, latency_s=0.05)
        answered = []
        deadline = time.monotonic() + 10
        while len(answered) < 3 and time.monotonic() < deadline:
            body = submit(http, url, user, f"Screen flickers in bay {len(answered)}")
            if body["status"] == "ok":
                answered.append(body)
            time.sleep(0.2)

    assert len(answered) == 3, "the breaker stayed open after a trial whose client left"
    assert not breaker_for("openai-responses").is_open
    trial = RequestLog.objects.get(text__contains="(trial)")
    assert trial.status == RequestStatus.ABANDONED


@pytest.mark.django_db(transaction=True)
def test_a_request_refused_at_validation_while_half_open_does_not_hold_the_trial(
    short_cooldown, asgi_live_server, routes, user, openai_upstream
):
    url = asgi_live_server.url
    with httpx2.Client(timeout=30) as http:
        open_the_breaker(http, url, user, openai_upstream)
        openai_upstream.configure(fail=None)
        time.sleep(COOLDOWN_S + 0.3)
        refused = http.post(
            f"{url}{URL}",
            json={"text": "TrackMan\u0000 frozen", "route": "tech"},
            headers={"Authorization": token_header(user), "Accept": "text/event-stream"},
        )
        assert refused.status_code == 400
        assert "Null characters" in refused.text
        body = submit(http, url, user, "Screen flickers in bay 2")

    assert body["status"] == "ok"
    assert not breaker_for("openai-responses").is_open


def test_a_trial_nobody_reports_on_expires_after_one_cooldown():
    """Whatever path forgets to report a trial, the circuit is not held for ever."""
    breaker = CircuitBreaker(threshold=2, cooldown_s=0.2)
    breaker.record_failure()
    breaker.record_failure()
    assert not breaker.allow()  # open
    time.sleep(0.25)
    assert breaker.allow()  # the trial, never reported on
    assert not breaker.allow()  # one trial at a time
    time.sleep(0.25)
    assert breaker.allow()  # the lost trial has expired: the next request tries
    breaker.record_success()
    assert not breaker.is_open
    assert breaker.allow() and breaker.allow()


def test_the_first_trial_comes_soon_and_failed_trials_space_out_the_next_up_to_the_cooldown():
    breaker = CircuitBreaker(threshold=1, cooldown_s=0.3, first_cooldown_s=0.1)
    breaker.record_failure()  # opens: the first wait is the short one
    assert not breaker.allow()
    time.sleep(0.12)
    assert breaker.allow()  # a blip is over for the desk soon after the upstream heals
    breaker.record_failure()  # the trial failed: the next wait is 1.5 times longer
    time.sleep(0.12)
    assert not breaker.allow()
    time.sleep(0.05)
    assert breaker.allow()
    breaker.record_failure()  # waits 0.225 s
    time.sleep(0.24)
    assert breaker.allow()
    breaker.record_failure()  # 0.3375 s, but never beyond the cooldown
    time.sleep(0.31)
    assert breaker.allow()
    breaker.record_success()
    breaker.record_failure()  # opened afresh: the short wait again
    time.sleep(0.12)
    assert breaker.allow()


def test_calls_sent_before_the_circuit_opened_do_not_push_the_trial_back():
    """Under load many calls are in flight when the circuit opens; their failures, arriving
    one after another, must not each restart the wait (the desk would wait the longest)."""
    breaker = CircuitBreaker(threshold=1, cooldown_s=5.0, first_cooldown_s=0.1)
    stragglers_sent = time.monotonic()
    breaker.record_failure(sent_at=stragglers_sent)  # opens
    time.sleep(0.05)
    for _ in range(20):
        breaker.record_failure(sent_at=stragglers_sent)
    time.sleep(0.06)
    assert breaker.allow()  # the trial, 0.1 s after the circuit opened
    breaker.record_no_verdict(sent_at=stragglers_sent)  # a straggler's client left
    assert not breaker.allow()  # still one trial at a time
    breaker.record_success()
    assert breaker.allow() and not breaker.is_open
