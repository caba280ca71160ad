"""The assistant's streamed call on an event loop (the ASGI server's path), against the fake
OpenAI server: the answer, the retry, every failure mode and the kept-alive connection."""

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from assistants.backends.base import AssistantError, Completion, FailureKind, TextDelta
from assistants.backends.openai_backends import status_failure
from assistants.services import AssistantCall
from config.llm import openai_async_channel_close, openai_async_channel_open
from config.selectors import system_config_get
from config.services import system_config_update
from routing.models import Route
from routing.selectors import route_catalog_get

pytestmark = pytest.mark.django_db

TEXT = "TrackMan frozen in bay 3"


def tech_call() -> AssistantCall:
    route = route_catalog_get().get("tech")
    assert route is not None
    return AssistantCall(text=TEXT, location="Bay 3", route=route, config=system_config_get())


def on_a_loop[T](work: Callable[[], Awaitable[T]], *, as_a_worker: bool = False) -> T:
    """Run ``work`` on a new event loop. ``as_a_worker``: first open the loop's channel to
    the model's server, as a server worker does at start-up, and close it afterwards."""

    async def run() -> T:
        if as_a_worker:
            await openai_async_channel_open(timeout_s=5)
        try:
            return await work()
        finally:
            await openai_async_channel_close()

    return asyncio.run(run())


def answer_calls(upstream: Any) -> list[Any]:
    return [c for c in upstream.calls if c.path != "/v1/models"]


def streamed(call: AssistantCall) -> tuple[list[Any], AssistantError | None]:
    async def collect() -> tuple[list[Any], AssistantError | None]:
        events: list[Any] = []
        try:
            async for event in call.astream():
                events.append(event)
        except AssistantError as exc:
            return events, exc
        return events, None

    return on_a_loop(collect)


def test_the_answer_streams_in_order_then_its_completion(openai_upstream):
    openai_upstream.configure(answer_text="Reboot the TrackMan unit, then recalibrate.")
    events, failure = streamed(tech_call())
    assert failure is None
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(deltas) == "Reboot the TrackMan unit, then recalibrate."
    assert isinstance(events[-1], Completion) and events[-1].tokens_out
    [call] = openai_upstream.calls
    assert call.path == "/v1/responses" and call.stream
    assert call.body["instructions"] == Route.objects.get(slug="tech").instructions
    assert TEXT in str(call.body["input"])


def test_the_chat_completions_backend_streams_too(openai_upstream, settings):
    settings.ASSISTANT_BACKEND = "openai-chat"
    events, failure = streamed(tech_call())
    assert failure is None and isinstance(events[-1], Completion)
    assert [c.path for c in openai_upstream.calls] == ["/v1/chat/completions"]


def test_consecutive_calls_reuse_one_connection(openai_upstream):
    calls = [tech_call() for _ in range(3)]

    async def three() -> None:
        for call in calls:
            async for _event in call.astream():
                pass

    on_a_loop(three, as_a_worker=True)
    peers = {c.client for c in answer_calls(openai_upstream)}
    assert len(answer_calls(openai_upstream)) == 3 and len(peers) == 1 and None not in peers


@pytest.mark.parametrize("backend", ["openai-responses", "openai-chat"])
def test_the_completion_does_not_wait_for_the_end_of_the_body(openai_upstream, settings, backend):
    # The last event says the answer is complete; the server then keeps its body open for
    # a second. The request's final write goes ahead at once, and the rest of the body is
    # read afterwards, so the connection still serves the next call.
    settings.ASSISTANT_BACKEND = backend
    openai_upstream.configure(answer_text="Reboot it.", hold_end_s=1.0)

    first, second = tech_call(), tech_call()

    async def twice() -> tuple[float, float, list[Any]]:
        started = time.monotonic()
        stream = first.astream()
        events = [event async for event in _until_completion(stream)]
        completed = time.monotonic() - started
        async for _ in stream:
            pass
        ended = time.monotonic() - started
        async for _event in second.astream():
            pass
        return completed, ended, events

    completed, ended, events = on_a_loop(twice, as_a_worker=True)
    assert isinstance(events[-1], Completion) and events[-1].text == "Reboot it."
    assert completed < 0.5 <= 1.0 <= ended
    peers = {c.client for c in answer_calls(openai_upstream)}
    assert len(answer_calls(openai_upstream)) == 2 and len(peers) == 1


async def _until_completion(stream: Any) -> Any:
    async for event in stream:
        yield event
        if isinstance(event, Completion):
            return


def test_one_429_is_retried_once(openai_upstream):
    openai_upstream.configure(fail="429", fail_times=1)
    call = tech_call()
    events, failure = streamed(call)
    assert failure is None and isinstance(events[-1], Completion)
    assert len(openai_upstream.calls) == 2 and call.upstream_calls == 2


def test_a_persistent_500_fails_as_the_upstream_after_one_retry(openai_upstream):
    openai_upstream.configure(fail="500")
    _, failure = streamed(tech_call())
    assert failure is not None and failure.kind is FailureKind.UPSTREAM
    assert "500" in str(failure)
    assert len(openai_upstream.calls) == 2


def test_a_hanging_model_times_out_within_the_deadline(openai_upstream):
    system_config_update(assistant_timeout_s=1.0)
    openai_upstream.configure(fail="hang", hang_s=5.0)
    started = time.monotonic()
    _, failure = streamed(tech_call())
    assert failure is not None and failure.kind is FailureKind.TIMEOUT
    assert time.monotonic() - started < 2.0


def test_a_stream_dropped_after_text_fails_and_is_not_retried(openai_upstream):
    openai_upstream.configure(fail="disconnect")
    events, failure = streamed(tech_call())
    assert any(isinstance(e, TextDelta) for e in events)
    assert failure is not None and failure.kind is FailureKind.UPSTREAM
    assert len(openai_upstream.calls) == 1


def test_a_server_that_is_not_there_is_a_lost_connection(openai_upstream, settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{port}/v1"
    system_config_update(assistant_retries=0)
    _, failure = streamed(tech_call())
    assert failure is not None and failure.kind is FailureKind.UPSTREAM
    assert "connection" in str(failure)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, FailureKind.RATE_LIMITED),
        (500, FailureKind.UPSTREAM),
        (503, FailureKind.UPSTREAM),
        (400, FailureKind.REJECTED),
        (401, FailureKind.REJECTED),
    ],
)
def test_error_statuses_are_the_same_failures_as_through_the_sdk(status, kind):
    assert status_failure(status).kind is kind


def test_a_trial_call_cut_short_leaves_the_breaker_free_to_try_again(openai_upstream, settings):
    from assistants.breaker import breaker_for

    settings.ASSISTANT_BREAKER_FIRST_COOLDOWN_S = 0.05
    system_config_update(assistant_retries=0)
    openai_upstream.configure(fail="500")
    for _ in range(5):
        assert streamed(tech_call())[1] is not None
    breaker = breaker_for("openai-responses")
    assert breaker.is_open
    time.sleep(0.1)
    openai_upstream.configure(fail=None, ttft_s=2.0, latency_s=2.5)  # healed, but slow
    trial = tech_call()

    async def leave_during_the_trial() -> None:
        reading = asyncio.ensure_future(anext(trial.astream()))
        await asyncio.sleep(0.3)  # the trial call is out; the person goes away
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading

    on_a_loop(leave_during_the_trial)
    assert trial.upstream_calls == 1
    openai_upstream.configure(ttft_s=0.0, latency_s=0.0)
    events, failure = streamed(tech_call())  # the next request tries again, and heals it
    assert failure is None and isinstance(events[-1], Completion)
    assert not breaker.is_open
