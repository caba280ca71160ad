"""One request end to end through the services: routing, the assistant, the log row."""

import asyncio
import time

import pytest
from django.core.exceptions import ValidationError

from config.services import system_config_update
from requestlogs.models import RequestLog, RequestStatus
from requestlogs.services import (
    AnswerDelta,
    RequestDone,
    RouteChosen,
    request_log_create,
    request_log_new,
    request_process,
    request_process_async,
    request_submit,
    request_validate,
)
from routing.models import Route
from routing.services import route_catalog_invalidate, route_update

pytestmark = pytest.mark.django_db


def submit(text: str, route: str = "auto", location: str = "Bedford", user=None) -> RequestLog:
    return request_submit(text=text, route=route, location=location, user=user)


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
        request = request_validate(text="smoke coming from the projector in bay 2", user=None)
        log = request_log_create(request=request)
        events = list(request_process(request=request, log=log))
        assert isinstance(events[0], RouteChosen)
        assert events[0].decision.route.slug == "emergency"
        first_text = next(e for e in events if isinstance(e, AnswerDelta))
        preamble = Route.objects.get(slug="emergency").safety_preamble.strip()
        assert first_text.text.startswith(preamble)
        assert refreshed(log).answer.startswith(preamble)

    def test_the_row_exists_as_received_before_routing_starts(self):
        request = request_validate(text="TrackMan frozen in bay 3", user=None)
        log = request_log_create(request=request)
        assert RequestLog.objects.get(pk=log.pk).status == RequestStatus.RECEIVED
        stream = request_process(request=request, log=log)
        assert isinstance(next(stream), RouteChosen)
        stream.close()

    def test_client_going_away_mid_stream_leaves_a_final_status(self):
        request = request_validate(text="TrackMan frozen in bay 3", user=None)
        log = request_log_create(request=request)
        stream = request_process(request=request, log=log)
        next(stream)
        next(stream)
        stream.close()
        row = refreshed(log)
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
            request_submit(user=None, **kwargs)
        assert field in info.value.message_dict
        assert not RequestLog.objects.exists()

    def test_disabled_route_cannot_be_chosen(self):
        route_update(route=Route.objects.get(slug="brand"), enabled=False)
        with pytest.raises(ValidationError) as info:
            submit("new promo post please", route="brand")
        assert "route" in info.value.message_dict

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

    def test_consecutive_answers_reuse_one_upstream_connection(self, openai_upstream):
        # Each answer is read to the end of its body, so the SDK's pooled connection is
        # free for the next call instead of being closed and reopened.
        for n in range(3):
            assert submit(f"TrackMan frozen in bay {n}", route="tech").status == RequestStatus.OK
        peers = {c.client for c in openai_upstream.calls}
        assert len(openai_upstream.calls) == 3 and len(peers) == 1 and None not in peers

    def test_streamed_text_arrives_in_order_and_whole(self, openai_upstream):
        openai_upstream.configure(answer_text="Reboot the TrackMan unit, then recalibrate.")
        request = request_validate(text="TrackMan frozen", route="tech", user=None)
        log = request_log_create(request=request)
        events = list(request_process(request=request, log=log))
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
        request = request_validate(text="TrackMan frozen in bay 3", route="tech", user=None)
        log = request_log_create(request=request)
        events = list(request_process(request=request, log=log))
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


def drain(events, loop: asyncio.AbstractEventLoop) -> list:
    async def collect() -> list:
        return [event async for event in events]

    return asyncio.run_coroutine_threadsafe(collect(), loop).result(10)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("routes")
class TestOnTheEventLoop:
    """``request_process_async``, as the ASGI view drives it: the thread routes and writes
    the row while the model's request is already on its way from the server's loop."""

    def test_the_row_is_written_before_the_stream_starts_and_finished_after(
        self, openai_upstream, server_loop
    ):
        openai_upstream.configure(ttft_s=0.3, latency_s=0.6, answer_text="Reboot the unit.")
        request = request_validate(text="TrackMan frozen in bay 3", route="tech", user=None)
        log = request_log_new(request=request)

        events = request_process_async(request=request, log=log, loop=server_loop)
        row = RequestLog.objects.get(pk=log.pk)
        assert row.status == RequestStatus.RECEIVED
        # The model's request left before the thread was done with routing and the row.
        deadline = time.monotonic() + 2
        while not openai_upstream.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [c.path for c in openai_upstream.calls] == ["/v1/responses"]

        out = drain(events, server_loop)
        assert isinstance(out[0], RouteChosen) and isinstance(out[-1], RequestDone)
        assert "".join(e.text for e in out if isinstance(e, AnswerDelta)) == "Reboot the unit."
        row = refreshed(log)
        assert row.status == RequestStatus.OK and row.answer == "Reboot the unit."
        assert len(openai_upstream.calls) == 1

    def test_closing_before_the_first_text_abandons_the_row_and_the_call(
        self, openai_upstream, server_loop
    ):
        openai_upstream.configure(ttft_s=1.0, latency_s=1.5)
        request = request_validate(text="TrackMan frozen in bay 3", route="tech", user=None)
        log = request_log_new(request=request)
        events = request_process_async(request=request, log=log, loop=server_loop)

        async def first_then_close() -> None:
            assert isinstance(await anext(events), RouteChosen)
            await events.aclose()

        asyncio.run_coroutine_threadsafe(first_then_close(), server_loop).result(5)
        assert refreshed(log).status == RequestStatus.ABANDONED

    def test_a_failure_before_the_row_was_written_still_leaves_a_row(self, server_loop):
        Route.objects.update(enabled=False)
        route_catalog_invalidate()
        request = request_validate(text="TrackMan frozen in bay 3", user=None)
        log = request_log_new(request=request)

        with pytest.raises(Exception, match="no route is enabled"):
            request_process_async(request=request, log=log, loop=server_loop)
        row = RequestLog.objects.get(pk=log.pk)
        assert row.status == RequestStatus.ERROR
        assert "no route is enabled" in row.error
