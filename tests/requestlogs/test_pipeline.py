"""One request end to end through the pipeline: routing, the assistant, the log row."""

import asyncio
import contextlib
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from rest_framework.exceptions import ValidationError

from config.llm import openai_async_channel_open
from config.selectors import system_config_get
from config.services import system_config_update
from requestlogs.models import RequestLog, RequestStatus
from requestlogs.pipeline import (
    AnswerDelta,
    PipelineEvent,
    RequestDone,
    RouteChosen,
    request_answer,
    request_start,
)
from requestlogs.validation import RequestInput, request_validate
from routing.models import Route
from routing.selectors import route_catalog_get
from routing.services import route_update

pytestmark = pytest.mark.django_db


def validated(text: Any, route: Any = "auto", location: Any = "Bedford", user=None) -> RequestInput:
    return request_validate(
        data={"text": text, "route": route, "location": location},
        user=user,
        config=system_config_get(),
        catalog=route_catalog_get(),
    )


def submit(text: str, route: str = "auto", location: str = "Bedford", user=None) -> RequestLog:
    return async_to_sync(request_answer)(request=validated(text, route, location, user)).log


def run(request: RequestInput) -> tuple[RequestLog, list[PipelineEvent]]:
    """Accept a request and collect all its events."""

    async def go() -> tuple[RequestLog, list[PipelineEvent]]:
        started = await request_start(request=request)
        return started.log, [event async for event in started.events()]

    return async_to_sync(go)()


def refreshed(log: RequestLog) -> RequestLog:
    return RequestLog.objects.select_related("route").get(pk=log.pk)


class TestOfflineDefault:
    def test_trackman_frozen_goes_to_tech_with_an_sop_answer(self):
        log = refreshed(submit("TrackMan frozen in bay 3"))
        assert log.status == RequestStatus.OK
        assert log.route.slug == "tech"
        assert log.routing_source in {"rules", "local", "llm"}
        assert "TrackMan" in log.answer
        assert log.backend == "offline"
        assert log.upstream_calls == 0
        assert log.total_ms is not None and log.total_ms >= log.routing_ms
        assert log.ttft_ms is not None and log.assistant_ms is not None
        assert log.finished_at is not None

    def test_chosen_route_is_manual_and_does_no_routing(self):
        log = refreshed(submit("the screen is weird", route="booking"))
        assert log.route.slug == "booking"
        assert log.routing_source == "manual"
        assert log.confidence == 1.0

    def test_emergency_shows_the_safety_preamble_first(self):
        log, events = run(validated("smoke coming from the projector in bay 2"))
        assert isinstance(events[0], RouteChosen)
        assert events[0].decision.route.slug == "emergency"
        first_text = next(e for e in events if isinstance(e, AnswerDelta))
        preamble = Route.objects.get(slug="emergency").safety_preamble.strip()
        assert first_text.text.startswith(preamble)
        assert refreshed(log).answer.startswith(preamble)

    def test_the_row_exists_as_received_before_routing_starts(self):
        request = validated("TrackMan frozen in bay 3")

        async def go() -> None:
            started = await request_start(request=request)
            row = await RequestLog.objects.aget(pk=started.log.pk)
            assert row.status == RequestStatus.RECEIVED and row.route_id is None
            events = started.events()
            assert isinstance(await anext(events), RouteChosen)
            await events.aclose()

        async_to_sync(go)()

    def test_client_going_away_mid_stream_leaves_a_final_status(self):
        request = validated("TrackMan frozen in bay 3")

        async def go() -> RequestLog:
            started = await request_start(request=request)
            events = started.events()
            await anext(events)
            await anext(events)
            await events.aclose()
            return started.log

        row = refreshed(async_to_sync(go)())
        assert row.status == RequestStatus.ABANDONED
        assert row.route.slug == "tech"
        assert row.total_ms is not None


class TestValidation:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"text": ""}, "text"),
            ({"text": "   \n  "}, "text"),
            ({"text": "x" * 4001}, "text"),
            ({"text": None}, "text"),
            ({"text": 42}, "text"),
            ({"text": "ok", "route": "nope"}, "route"),
            ({"text": "ok", "route": 7}, "route"),
            ({"text": "ok", "location": "x" * 101}, "location"),
            ({"text": "ok", "location": ["a"]}, "location"),
        ],
    )
    def test_bad_input_is_rejected_per_field_and_writes_nothing(self, kwargs, field):
        with pytest.raises(ValidationError) as info:
            validated(**{"location": "", **kwargs})
        assert field in info.value.detail
        assert not RequestLog.objects.exists()

    def test_disabled_route_cannot_be_chosen(self):
        route_update(route=Route.objects.get(slug="brand"), enabled=False)
        with pytest.raises(ValidationError) as info:
            submit("new promo post please", route="brand")
        assert "route" in info.value.detail

    def test_text_is_trimmed_and_4000_characters_is_fine(self):
        log = submit("  " + "a" * 4000 + "  ", route="tech")
        assert len(refreshed(log).text) == 4000


class TestUpstream:
    def test_chosen_route_makes_exactly_one_upstream_call(self, openai_upstream):
        log = refreshed(submit("TrackMan frozen in bay 3", route="tech"))
        assert len(openai_upstream.calls) == 1
        call = openai_upstream.calls[0]
        assert call.path == "/v1/responses"
        assert log.status == RequestStatus.OK
        assert log.upstream_calls == 1
        assert log.backend == "openai-responses"
        assert log.answer and log.tokens_out and log.tokens_in
        assert log.ttft_ms is not None and log.ttft_ms <= log.total_ms
        # The route's own instructions travel with the call: no vendor dashboard.
        assert call.body["instructions"] == Route.objects.get(slug="tech").instructions
        assert "TrackMan frozen in bay 3" in str(call.body["input"])

    def test_streamed_text_arrives_in_order_and_whole(self, openai_upstream):
        openai_upstream.configure(answer_text="Reboot the TrackMan unit, then recalibrate.")
        log, events = run(validated("TrackMan frozen", route="tech"))
        deltas = [e.text for e in events if isinstance(e, AnswerDelta)]
        assert deltas and "".join(deltas) == "Reboot the TrackMan unit, then recalibrate."
        assert refreshed(log).answer == "".join(deltas)

    def test_auto_with_the_llm_router_makes_two_calls(self, openai_upstream):
        system_config_update(routing_strategy="llm")
        log = refreshed(submit("TrackMan frozen in bay 3"))
        assert [c.path for c in openai_upstream.calls] == ["/v1/responses", "/v1/responses"]
        assert log.routing_source == "llm"
        assert log.route.slug == "tech"
        assert log.upstream_calls == 2

    def test_llm_router_failure_falls_back_to_rules(self, openai_upstream):
        system_config_update(routing_strategy="llm", assistant_retries=0)
        openai_upstream.configure(fail="500", fail_times=1)
        log = refreshed(submit("customer locked out, door code not working"))
        assert log.routing_source == "rules"
        assert log.route.slug == "booking"
        assert log.status == RequestStatus.OK

    def test_chat_completions_backend(self, openai_upstream, settings):
        settings.ASSISTANT_BACKEND = "openai-chat"
        log = refreshed(submit("projector shows no image", route="tech"))
        assert [c.path for c in openai_upstream.calls] == ["/v1/chat/completions"]
        assert log.status == RequestStatus.OK
        assert log.backend == "openai-chat"
        assert log.tokens_out

    def test_route_backend_overrides_the_default(self, openai_upstream):
        route_update(route=Route.objects.get(slug="tech"), backend="offline")
        log = refreshed(submit("TrackMan frozen in bay 3", route="tech"))
        assert openai_upstream.calls == []
        assert log.backend == "offline"

    def test_one_429_is_retried_once(self, openai_upstream):
        openai_upstream.configure(fail="429", fail_times=1)
        log = refreshed(submit("TrackMan frozen in bay 3", route="tech"))
        assert len(openai_upstream.calls) == 2
        assert log.status == RequestStatus.OK
        assert log.upstream_calls == 2

    def test_persistent_500_gives_a_clear_answer_and_an_error_row(self, openai_upstream):
        openai_upstream.configure(fail="500")
        log = refreshed(submit("TrackMan frozen in bay 3", route="tech"))
        assert len(openai_upstream.calls) == 2  # the call and its one retry
        assert log.status == RequestStatus.ERROR
        assert "could not answer" in log.answer
        assert "TrackMan" in log.answer  # the procedure on file, meanwhile
        assert "500" in log.error

    def test_a_hanging_upstream_times_out_within_the_deadline(self, openai_upstream):
        system_config_update(assistant_timeout_s=1.5)
        openai_upstream.configure(fail="hang")
        started = time.monotonic()
        log = refreshed(submit("TrackMan frozen in bay 3", route="tech"))
        elapsed = time.monotonic() - started
        assert log.status == RequestStatus.TIMEOUT
        assert "did not answer in time" in log.answer
        assert elapsed < 2.5

    def test_circuit_opens_and_fails_fast_when_the_upstream_is_down(self, openai_upstream):
        system_config_update(assistant_retries=0)
        openai_upstream.configure(fail="500")
        for _ in range(5):
            submit("TrackMan frozen in bay 3", route="tech")
        calls_before = len(openai_upstream.calls)
        log = refreshed(submit("TrackMan frozen in bay 3", route="tech"))
        assert len(openai_upstream.calls) == calls_before
        assert log.status == RequestStatus.ERROR
        assert "unavailable" in log.answer

    def test_dropped_stream_after_text_is_not_retried(self, openai_upstream):
        openai_upstream.configure(fail="disconnect")
        log, events = run(validated("TrackMan frozen in bay 3", route="tech"))
        assert isinstance(events[-1], RequestDone) and events[-1].failed
        assert len(openai_upstream.calls) == 1
        assert refreshed(log).status == RequestStatus.ERROR


class TestResponseCache:
    def test_repeat_is_served_from_cache_without_an_upstream_call(self, openai_upstream):
        system_config_update(response_cache_enabled=True)
        first = refreshed(submit("TrackMan frozen in bay 3", route="tech"))
        second = refreshed(submit("trackman   FROZEN in bay 3!", route="tech"))
        assert len(openai_upstream.calls) == 1
        assert second.status == RequestStatus.CACHED and second.cached
        assert second.answer == first.answer
        assert second.upstream_calls == 0

    def test_editing_the_route_instructions_invalidates_its_answers(self, openai_upstream):
        system_config_update(response_cache_enabled=True)
        submit("TrackMan frozen in bay 3", route="tech")
        route = Route.objects.get(slug="tech")
        route_update(route=route, instructions=route.instructions + "\nAlways mention bay numbers.")
        log = refreshed(submit("TrackMan frozen in bay 3", route="tech"))
        assert len(openai_upstream.calls) == 2
        assert log.status == RequestStatus.OK

    def test_emergency_is_never_cached(self, openai_upstream):
        system_config_update(response_cache_enabled=True)
        submit("fire in bay 3", route="emergency")
        log = refreshed(submit("fire in bay 3", route="emergency"))
        assert len(openai_upstream.calls) == 2
        assert log.status == RequestStatus.OK


class TestQueries:
    def test_warm_request_with_a_chosen_route_makes_two_queries(self, django_assert_num_queries):
        submit("warm the caches", route="tech")
        with django_assert_num_queries(2):  # INSERT the row, UPDATE it
            submit("TrackMan frozen in bay 3", route="tech")

    def test_warm_auto_request_makes_two_queries(self, django_assert_num_queries):
        submit("warm the caches", route="tech")
        with django_assert_num_queries(2):
            submit("TrackMan frozen in bay 3")


def on_loop(loop: asyncio.AbstractEventLoop, work: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(work, loop).result(10)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("routes")
class TestOnTheServersLoop:
    """The pipeline on a long-lived event loop, as a server worker runs it."""

    def test_the_row_is_committed_before_the_models_request_leaves(
        self, openai_upstream, server_loop
    ):
        openai_upstream.configure(ttft_s=0.5, latency_s=0.8, answer_text="Reboot the unit.")
        request = validated("TrackMan frozen in bay 3", route="tech")

        async def go() -> tuple[RequestLog, list[PipelineEvent]]:
            started = await request_start(request=request)
            return started.log, [event async for event in started.events()]

        running = asyncio.run_coroutine_threadsafe(go(), server_loop)
        deadline = time.monotonic() + 5
        while not openai_upstream.calls and time.monotonic() < deadline:
            time.sleep(0.005)
        # The model has the request (and has not answered yet): its row is committed.
        [row] = RequestLog.objects.all()
        assert row.status == RequestStatus.RECEIVED
        assert not running.done()

        log, events = running.result(10)
        assert isinstance(events[0], RouteChosen) and isinstance(events[-1], RequestDone)
        assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "Reboot the unit."
        row = refreshed(log)
        assert row.status == RequestStatus.OK and row.answer == "Reboot the unit."
        assert len(openai_upstream.calls) == 1

    def test_closing_before_the_first_text_abandons_the_row_and_the_call(
        self, openai_upstream, server_loop
    ):
        openai_upstream.configure(ttft_s=1.0, latency_s=1.5)
        request = validated("TrackMan frozen in bay 3", route="tech")

        async def first_then_close() -> RequestLog:
            started = await request_start(request=request)
            events = started.events()
            assert isinstance(await anext(events), RouteChosen)
            # Waiting for the first text when the client goes away: the server cancels.
            waiting = asyncio.ensure_future(anext(events))
            await asyncio.sleep(0.3)
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            return started.log

        log = on_loop(server_loop, first_then_close())
        assert refreshed(log).status == RequestStatus.ABANDONED
        # The model's call was cut off too, not left to run to its end (1.5 s).
        deadline = time.monotonic() + 2
        [call] = openai_upstream.calls
        while call.finished is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert call.finished is not None and call.finished - call.started < 1.2

    def test_consecutive_answers_reuse_the_workers_upstream_connection(
        self, openai_upstream, server_loop
    ):
        # Each answer is read to the end of its body, so the pooled connection the worker
        # opened at start-up is free for the next call instead of being closed and reopened.
        on_loop(server_loop, openai_async_channel_open(timeout_s=5))
        for n in range(3):
            request = validated(f"TrackMan frozen in bay {n}", route="tech")
            assert on_loop(server_loop, request_answer(request=request)).log.status == "ok"
        calls = [c for c in openai_upstream.calls if c.path == "/v1/responses"]
        peers = {c.client for c in calls}
        assert len(calls) == 3 and len(peers) == 1 and None not in peers

    def test_a_request_cancelled_while_its_row_is_written_leaves_a_final_row(self, server_loop):
        request = validated("TrackMan frozen in bay 3", route="tech")

        async def cancelled_at_once() -> None:
            task = asyncio.ensure_future(request_start(request=request))
            await asyncio.sleep(0)  # the INSERT is on its way
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        on_loop(server_loop, cancelled_at_once())
        [row] = RequestLog.objects.all()
        assert row.status == RequestStatus.ABANDONED
