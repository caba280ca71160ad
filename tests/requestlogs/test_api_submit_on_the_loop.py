"""The submit served entirely on the event loop (``request_submit_on_loop``), streamed or
JSON, and every request it leaves to the middleware and the view in a thread, untouched.

PostgreSQL only: the loop writes the row on its own pool (``config.db_async``).
"""

import asyncio
import io
import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import connection
from django.http.response import HttpResponseBase

from clubos.auth import CachedTokenAuthentication
from clubos.serving import EventStreamResponse
from config.caching import SharedSnapshot
from config.selectors import system_config_get
from config.services import system_config_update
from requestlogs.apis import request_submit_on_loop
from requestlogs.models import RequestLog, RequestStatus
from requestlogs.services import (
    RequestRun,
    _insert_compiled,
    _insert_statement,
    request_log_new,
)
from requestlogs.services import request_validate as validate
from routing.models import Route
from routing.router import strategy_get
from routing.selectors import route_catalog_get
from routing.services import route_update, route_utterance_add
from tests.requestlogs.api_factories import token_header

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the event loop's pool is PostgreSQL's"
)

TECH = {"text": "TrackMan frozen in bay 3", "route": "tech"}
MIDDLEWARE = list(django_settings.MIDDLEWARE)


def scope_for(headers: dict[str, str], path: str = "/api/v1/requests/") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
    }


@pytest.mark.django_db
@pytest.mark.usefixtures("routes")
def test_the_remembered_insert_is_what_the_orm_compiles():
    request = validate(text="TrackMan frozen in bay 3", route="tech", user=None)
    first, second = request_log_new(request=request), request_log_new(request=request)
    _insert_statement(first)  # compiles and remembers the SQL
    assert _insert_statement(second) == _insert_compiled(second)


@on_postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("routes")
class TestOnTheLoop:
    @pytest.fixture(autouse=True)
    def pool(self, server_loop_db_pool):
        return server_loop_db_pool

    @pytest.fixture
    def known_token(self, user) -> str:
        """The user's token, as a worker knows it once it has checked it."""
        header = token_header(user)
        CachedTokenAuthentication().authenticate_credentials(header.split()[1])
        return header

    @staticmethod
    def headers(token: str, **changes: str) -> dict[str, str]:
        return {
            "Accept": "text/event-stream",
            "Content-Type": "application/json",
            "Authorization": token,
        } | changes

    @staticmethod
    def submit(
        loop: asyncio.AbstractEventLoop,
        headers: dict[str, str],
        body: bytes,
        query_string: bytes = b"",
    ) -> tuple[HttpResponseBase | None, list[bytes], int]:
        """The lane's response (None: left to the thread), its frames (a JSON answer's
        body), and where the body's file stood afterwards (the thread's way reads it from
        the start)."""
        body_file = io.BytesIO(body)
        # A serving worker's copies of the config and routes, checked within the second.
        system_config_get()
        route_catalog_get()

        async def run() -> tuple[HttpResponseBase | None, list[bytes]]:
            scope = scope_for(headers) | {"query_string": query_string}
            response = await request_submit_on_loop(scope, body_file)
            if response is None:
                return None, []
            if isinstance(response, EventStreamResponse):
                frames = [bytes(f) async for f in response.stream]
            else:
                frames = [response.content]
            # As the server does once it is sent: in the request's thread, where the
            # request_finished signal gives back any database connection it used.
            await sync_to_async(response.close, thread_sensitive=True)()
            return response, frames

        response, frames = asyncio.run_coroutine_threadsafe(run(), loop).result(10)
        return response, frames, body_file.tell()

    def test_a_known_token_with_valid_input_is_answered_on_the_loop(
        self, server_loop, known_token, openai_upstream
    ):
        openai_upstream.configure(ttft_s=0.05, latency_s=0.2, answer_text="Reboot it.")
        response, frames, _ = self.submit(
            server_loop, self.headers(known_token), json.dumps(TECH).encode()
        )
        assert response is not None and response.status_code == 201
        names = [f.split(b"\n", 1)[0] for f in frames]
        assert names[0] == b"event: route" and names[-1] == b"event: done"
        done = json.loads(frames[-1].split(b"data: ", 1)[1])
        assert done["answer"] == "Reboot it." and done["status"] == "ok"
        row = RequestLog.objects.get(pk=done["id"])
        assert row.status == RequestStatus.OK and row.answer == "Reboot it."
        assert row.routing_source == "manual" and row.upstream_calls == 1
        assert len(openai_upstream.calls) == 1
        # The view's headers: the stream's own, DRF's and the security middleware's.
        assert response["Content-Type"] == "text/event-stream"
        assert response["Cache-Control"] == "no-cache"
        assert response["Allow"] == "GET, POST, HEAD, OPTIONS"
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"

    @pytest.mark.parametrize("accept", ["application/json", "", "*/*", "application/json, */*"])
    def test_a_json_submit_is_answered_on_the_loop_as_the_view_answers_it(
        self, server_loop, known_token, openai_upstream, accept
    ):
        openai_upstream.configure(ttft_s=0.05, latency_s=0.2, answer_text="Reboot it.")
        headers = {k: v for k, v in self.headers(known_token, Accept=accept).items() if v}
        response, [content], _ = self.submit(server_loop, headers, json.dumps(TECH).encode())
        assert response is not None and response.status_code == 201
        body = json.loads(content)
        assert body["answer"] == "Reboot it." and body["status"] == "ok"
        assert body["route"] == {"slug": "tech", "name": "TechSupport"}
        assert body["timings_ms"]["ttft"] is not None
        row = RequestLog.objects.get(pk=body["id"])
        assert row.status == RequestStatus.OK and row.answer == "Reboot it."
        assert len(openai_upstream.calls) == 1
        assert response["Content-Type"] == "application/json"
        assert response["Content-Length"] == str(len(content))
        assert response["Allow"] == "GET, POST, HEAD, OPTIONS"
        assert response["X-Frame-Options"] == "DENY"

    def test_a_json_submit_that_fails_inside_is_a_500_with_its_row_final(
        self, server_loop, known_token, openai_upstream, monkeypatch
    ):
        # A failure of ClubOS's own, not the model's: the final write raises once. The
        # pipeline records it on the row (its own write, from the request's thread).
        async def broken(run, pool):
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(RequestRun, "finish_async", broken)
        headers = self.headers(known_token, Accept="application/json")
        response, _, _ = self.submit(server_loop, headers, json.dumps(TECH).encode())
        assert response is not None and response.status_code == 500
        row = RequestLog.objects.get()
        assert row.status == RequestStatus.ERROR and "disk on fire" in row.error

    def test_an_internal_failure_while_routing_leaves_it_to_the_thread(
        self, server_loop, known_token, openai_upstream
    ):
        # With every route disabled an automatic request has nowhere to go: the thread's
        # way writes the row and records the failure, as for any request.
        for route in Route.objects.all():
            route_update(route=route, enabled=False)
        body = json.dumps({"text": "TrackMan frozen in bay 3"}).encode()
        response, _, position = self.submit(server_loop, self.headers(known_token), body)
        assert response is None and position == 0
        assert not RequestLog.objects.exists() and openai_upstream.calls == []

    def test_a_format_in_the_query_is_left_to_the_view(
        self, server_loop, known_token, openai_upstream
    ):
        headers = self.headers(known_token, Accept="application/json")
        response, _, _ = self.submit(
            server_loop, headers, json.dumps(TECH).encode(), query_string=b"format=json"
        )
        assert response is None and openai_upstream.calls == []

    def test_the_final_write_and_done_do_not_wait_for_the_models_body_to_end(
        self, server_loop, known_token, openai_upstream
    ):
        # The model's server keeps its body open a second after the answer's last event.
        openai_upstream.configure(ttft_s=0.05, latency_s=0.2, answer_text="Ok.", hold_end_s=1.0)
        body_file = io.BytesIO(json.dumps(TECH).encode())
        system_config_get()
        route_catalog_get()

        async def run() -> tuple[float, float, bytes]:
            started = time.monotonic()
            response = await request_submit_on_loop(scope_for(self.headers(known_token)), body_file)
            assert isinstance(response, EventStreamResponse)
            done_at, last = 0.0, b""
            async for frame in response.stream:
                if bytes(frame).startswith(b"event: done"):
                    done_at, last = time.monotonic() - started, bytes(frame)
            await sync_to_async(response.close, thread_sensitive=True)()
            return done_at, time.monotonic() - started, last

        done_at, ended, last = asyncio.run_coroutine_threadsafe(run(), server_loop).result(10)
        assert done_at < 0.9 and ended >= 1.0
        done = json.loads(last.split(b"data: ", 1)[1])
        assert done["status"] == "ok" and done["answer"] == "Ok."
        assert RequestLog.objects.get(pk=done["id"]).status == RequestStatus.OK

    def test_auto_routing_by_the_classifier_is_answered_on_the_loop(
        self, server_loop, known_token, openai_upstream
    ):
        # The router settles it without the LLM (asked, the LLM would get the request, and
        # the thread with it).
        system_config_update(llm_routing_enabled=False)
        body = json.dumps({"text": "the projector in bay 4 is flickering"}).encode()
        # Not before the classifier is trained for the routes (here, for an example just
        # added): training would hold the loop for seconds, so the thread's way trains it.
        route_utterance_add(route=Route.objects.get(slug="tech"), text="bay 4 screen flickers")
        assert self.submit(server_loop, self.headers(known_token), body)[0] is None
        assert not RequestLog.objects.exists()
        strategy_get("hybrid").warm(route_catalog_get())  # as a worker does at start-up
        response, frames, _ = self.submit(server_loop, self.headers(known_token), body)
        assert response is not None
        route = json.loads(frames[0].split(b"data: ", 1)[1])
        assert route["routing"]["source"] != "manual"
        assert [c.path for c in openai_upstream.calls] == ["/v1/responses"]

    @pytest.mark.parametrize(
        ("case", "headers", "body"),
        [
            ("no known token", {"Authorization": "Token not-a-key"}, TECH),
            ("a session, no token", {"Authorization": ""}, TECH),
            ("HTML asked for", {"Accept": "text/html"}, TECH),
            ("indented JSON asked for", {"Accept": "application/json; indent=4"}, TECH),
            ("a form, not JSON", {"Content-Type": "application/x-www-form-urlencoded"}, TECH),
            ("empty text", {}, {"text": "  ", "route": "tech"}),
            ("text not text", {}, {"text": 42}),
            ("unknown route", {}, {"text": "hello", "route": "golf-pro"}),
            ("not an object", {}, ["TrackMan frozen"]),
            ("an emergency", {}, {"text": "Smoke is coming out of bay 2's projector"}),
        ],
    )
    def test_anything_else_is_left_to_the_thread_untouched(
        self, server_loop, known_token, openai_upstream, case, headers, body
    ):
        headers = {k: v for k, v in self.headers(known_token, **headers).items() if v}
        response, _, position = self.submit(server_loop, headers, json.dumps(body).encode())
        assert response is None, case
        assert position == 0
        assert not RequestLog.objects.exists()
        assert openai_upstream.calls == []

    def test_a_router_that_would_ask_the_llm_leaves_it_to_the_thread(
        self, server_loop, known_token, openai_upstream
    ):
        system_config_update(routing_strategy="llm")
        response, _, _ = self.submit(
            server_loop, self.headers(known_token), json.dumps({"text": "hello"}).encode()
        )
        assert response is None
        assert not RequestLog.objects.exists() and openai_upstream.calls == []

    def test_an_offline_route_leaves_it_to_the_thread(
        self, server_loop, known_token, openai_upstream
    ):
        route_update(route=Route.objects.get(slug="tech"), backend="offline")
        response, _, _ = self.submit(
            server_loop, self.headers(known_token), json.dumps(TECH).encode()
        )
        assert response is None
        assert not RequestLog.objects.exists() and openai_upstream.calls == []

    def test_with_the_response_cache_on_a_repeat_is_answered_from_it_on_the_loop(
        self, server_loop, known_token, openai_upstream
    ):
        system_config_update(response_cache_enabled=True)
        openai_upstream.configure(ttft_s=0.05, latency_s=0.2, answer_text="Reboot it.")
        body = json.dumps(TECH).encode()
        first, _, _ = self.submit(server_loop, self.headers(known_token), body)
        repeat, frames, _ = self.submit(server_loop, self.headers(known_token), body)
        assert first is not None and repeat is not None
        assert len(openai_upstream.calls) == 1
        names = [f.split(b"\n", 1)[0] for f in frames]
        assert names == [b"event: route", b"event: delta", b"event: done"]
        done = json.loads(frames[-1].split(b"data: ", 1)[1])
        assert done["cached"] is True and done["answer"] == "Reboot it."
        row = RequestLog.objects.get(pk=done["id"])
        assert row.status == RequestStatus.CACHED and row.upstream_calls == 0
        json_headers = self.headers(known_token, Accept="application/json")
        again, [content], _ = self.submit(server_loop, json_headers, body)
        assert again is not None and again.status_code == 201
        answer = json.loads(content)
        assert answer["cached"] is True and answer["status"] == "cached"
        assert answer["answer"] == "Reboot it." and len(openai_upstream.calls) == 1
        assert RequestLog.objects.get(pk=answer["id"]).status == RequestStatus.CACHED

    def test_without_copies_of_the_config_and_routes_it_is_left_to_the_thread(
        self, server_loop, known_token, openai_upstream
    ):
        # Reading them may wait on the cache (or, with the cache down, the database).
        body_file = io.BytesIO(json.dumps(TECH).encode())
        SharedSnapshot.forget_all()

        async def run() -> EventStreamResponse | None:
            return await request_submit_on_loop(scope_for(self.headers(known_token)), body_file)

        assert asyncio.run_coroutine_threadsafe(run(), server_loop).result(10) is None
        assert not RequestLog.objects.exists() and openai_upstream.calls == []

    def test_middleware_it_does_not_know_sends_every_request_the_views_way(
        self, server_loop, known_token, openai_upstream, settings
    ):
        settings.MIDDLEWARE = [*MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]
        response, _, _ = self.submit(
            server_loop, self.headers(known_token), json.dumps(TECH).encode()
        )
        assert response is None and openai_upstream.calls == []

    def test_another_path_is_left_to_the_view(self, server_loop, known_token, openai_upstream):
        scope = scope_for(self.headers(known_token), path="/api/v1/requests/x/escalate/")

        async def run() -> EventStreamResponse | None:
            return await request_submit_on_loop(scope, io.BytesIO(json.dumps(TECH).encode()))

        system_config_get()
        route_catalog_get()
        assert asyncio.run_coroutine_threadsafe(run(), server_loop).result(10) is None
        assert not RequestLog.objects.exists() and openai_upstream.calls == []

    def test_switched_off_every_request_takes_the_thread(
        self, server_loop, known_token, openai_upstream, settings
    ):
        settings.API_SUBMIT_ON_LOOP = False
        response, _, _ = self.submit(
            server_loop, self.headers(known_token), json.dumps(TECH).encode()
        )
        assert response is None and openai_upstream.calls == []
