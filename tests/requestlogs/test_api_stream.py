"""Creating a request with ``Accept: text/event-stream``: the answer as server-sent events."""

import asyncio
import contextlib
import json
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from rest_framework.test import APIClient

import requestlogs.pipeline as pipeline
from config.services import system_config_update
from requestlogs.models import RequestLog, RequestStatus
from requestlogs.sse import sse_frame
from routing.models import Route
from routing.services import route_update
from tests.requestlogs.api_factories import SUBMIT_KEYS, token_header

URL = "/api/v1/requests/"
SSE = {"Accept": "text/event-stream"}
# A model that takes its time: first text after TTFT_S, the last of it after LATENCY_S.
TTFT_S = 0.1
LATENCY_S = 1.6
ANSWER = (
    "Restart the TrackMan app on the bay PC, then power-cycle the unit behind the screen. "
    "Wait ten seconds for the sensor lights to turn green and start a new session."
)


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Frames as (event, data): each frame is `event: x` and one `data: {json}` line."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(fields) == {"event", "data"}
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def streamed(response) -> bytes:
    """A streamed response's whole body (the test client leaves its async content as is)."""

    async def read() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    return async_to_sync(read)()


def close_response(response, monkeypatch) -> None:
    """Close a response as the WSGI server does, but keep the test's database connection.

    Closing fires ``request_finished``, whose ``close_old_connections`` would close the
    connection that holds the test's transaction.
    """
    with monkeypatch.context() as patch:
        patch.setattr(connection, "close_if_unusable_or_obsolete", lambda: None)
        response.close()


def test_sse_frame_is_one_event_line_and_one_compact_json_line():
    frame = sse_frame("delta", {"text": "line one\nline two"})

    assert frame == b'event: delta\ndata: {"text":"line one\\nline two"}\n\n'


@pytest.mark.django_db
class TestStreamWithTheTestClient:
    def test_route_then_deltas_then_done_with_the_full_request(self, api_client, routes):
        response = api_client.post(
            URL, {"text": "TrackMan frozen in bay 3", "route": "tech"}, format="json", headers=SSE
        )

        assert response.status_code == 201
        assert response.streaming
        assert response["Content-Type"].startswith("text/event-stream")
        assert response["Cache-Control"] == "no-cache"
        assert response["X-Accel-Buffering"] == "no"
        events = parse_sse(streamed(response))
        names = [name for name, _ in events]
        assert names[0] == "route"
        assert names[-1] == "done"
        assert set(names[1:-1]) == {"delta"}

        route = events[0][1]
        assert set(route) == {"id", "route", "routing", "timings_ms", "suggested_route"}
        assert route["route"] == {"slug": "tech", "name": routes["tech"].name}
        assert route["routing"] == {
            "source": "manual",
            "confidence": 1.0,
            "possible_emergency": False,
        }
        assert set(route["timings_ms"]) == {"routing"}

        done = events[-1][1]
        assert set(done) == SUBMIT_KEYS
        assert done["id"] == route["id"]
        assert done["status"] == "ok"
        assert done["answer"] == "".join(data["text"] for name, data in events if name == "delta")
        # The done event is the same object the detail endpoint returns (plus the hint).
        assert done.pop("suggested_route") is None
        assert api_client.get(f"{URL}{done['id']}/").json() == done

    def test_the_row_is_final_when_the_stream_ends(self, api_client, routes):
        response = api_client.post(
            URL, {"text": "Projector flickering"}, format="json", headers=SSE
        )
        done = parse_sse(streamed(response))[-1][1]

        row = RequestLog.objects.get(pk=done["id"])
        assert row.status == RequestStatus.OK
        assert row.answer == done["answer"]
        assert row.total_ms is not None

    @pytest.mark.parametrize(
        ("behaviour", "text_before_failure"),
        [
            pytest.param({"fail": "hang"}, False, id="no-answer-at-all"),
            pytest.param({"ttft_s": TTFT_S, "latency_s": 5.0}, True, id="too-slow-to-finish"),
        ],
    )
    def test_a_model_failure_ends_with_an_error_event(
        self, api_client, routes, openai_upstream, behaviour, text_before_failure
    ):
        system_config_update(assistant_timeout_s=1.0)
        openai_upstream.configure(**behaviour)

        response = api_client.post(
            URL, {"text": "TrackMan", "route": "tech"}, format="json", headers=SSE
        )

        assert response.status_code == 201
        events = parse_sse(streamed(response))
        assert events[0][0] == "route"
        deltas = [data["text"] for name, data in events if name == "delta"]
        assert (len(deltas) > 1) is text_before_failure  # the model's text, then the message
        assert "did not answer in time" in deltas[-1]
        name, data = events[-1]
        assert name == "error"
        assert set(data) == SUBMIT_KEYS | {"error"}
        assert data["status"] == "timeout"
        assert data["error"] == "The assistant did not answer in time."
        assert "did not answer in time" in data["answer"]
        assert RequestLog.objects.get(pk=data["id"]).status == RequestStatus.TIMEOUT
        assert len(openai_upstream.calls) == 1  # the deadline left no time for a retry

    def test_a_stream_dropped_mid_answer_ends_with_an_error_event(
        self, api_client, routes, openai_upstream
    ):
        openai_upstream.configure(fail="disconnect")  # a few deltas, then the connection drops

        response = api_client.post(
            URL, {"text": "TrackMan frozen in bay 3", "route": "tech"}, format="json", headers=SSE
        )

        assert response.status_code == 201
        events = parse_sse(streamed(response))
        names = [name for name, _ in events]
        assert names[0] == "route"
        assert names[1:-1] == ["delta"] * (len(names) - 2)
        assert len(names) - 2 > 1  # the model's text, then the message
        name, data = events[-1]
        assert name == "error"
        assert set(data) == SUBMIT_KEYS | {"error"}
        assert data["status"] == "error"
        assert data["error"] == "The assistant could not answer."
        assert "could not answer" in data["answer"]
        assert RequestLog.objects.get(pk=data["id"]).status == RequestStatus.ERROR
        # Text had already reached the person: a retry would show a second answer.
        assert len(openai_upstream.calls) == 1

    def test_an_internal_failure_still_ends_the_stream_with_an_error_event(
        self, api_client, routes
    ):
        # Not a model failure: with every route disabled an automatic request has nowhere
        # to go, and routing raises inside the pipeline after the row was written.
        for route in Route.objects.all():
            route_update(route=route, enabled=False)

        response = api_client.post(
            URL, {"text": "TrackMan frozen in bay 3"}, format="json", headers=SSE
        )

        assert response.status_code == 201
        name, data = parse_sse(streamed(response))[-1]
        assert name == "error"
        assert data["status"] == "error"
        assert data["error"] == "ClubOS failed while answering this request."
        assert RequestLog.objects.get(pk=data["id"]).status == RequestStatus.ERROR

    def test_closing_the_stream_after_the_first_event_marks_the_row_final(
        self, api_client, routes, monkeypatch
    ):
        response = api_client.post(
            URL, {"text": "TrackMan frozen in bay 3", "route": "tech"}, format="json", headers=SSE
        )

        async def first_event_then_leave() -> bytes:
            # As Django's ASGI handler does when the client goes away: the stream stops
            # on the loop, then the response is closed from a thread.
            first = await anext(response.streaming_content)
            await sync_to_async(close_response)(response, monkeypatch)
            return first

        first = parse_sse(async_to_sync(first_event_then_leave)())
        assert first[0][0] == "route"

        row = RequestLog.objects.get(pk=first[0][1]["id"])
        assert row.status == RequestStatus.ABANDONED
        assert row.route.slug == "tech"
        assert row.finished_at is not None

    def test_invalid_input_is_a_json_400_before_any_event(self, api_client, routes):
        response = api_client.post(URL, {"text": "", "route": "golf"}, format="json", headers=SSE)

        assert response.status_code == 400
        assert not response.streaming
        assert response["Content-Type"] == "application/json"
        assert set(response.json()) == {"text", "route"}
        assert not RequestLog.objects.exists()

    def test_unauthenticated_is_a_json_401_not_a_406(self, routes):
        response = APIClient().post(URL, {"text": "TrackMan"}, format="json", headers=SSE)

        assert response.status_code == 401
        assert response.json()["detail"]


@contextlib.contextmanager
def streamed_tech_request(server_url: str, user) -> Iterator[httpx2.Response]:
    """A TechSupport request streamed from a real server, its response still open."""
    with (
        httpx2.Client(timeout=10) as http,
        http.stream(
            "POST",
            f"{server_url}{URL}",
            json={"text": "TrackMan frozen in bay 3", "route": "tech"},
            headers={**SSE, "Authorization": token_header(user)},
        ) as response,
    ):
        yield response


@pytest.fixture
def server_url(asgi_live_server) -> str:
    """The ASGI application on a real server and socket, as production serves it."""
    return asgi_live_server.url


@pytest.mark.django_db(transaction=True)
class TestStreamOverRealHttp:
    """Through a real server and socket: frames must leave as they happen, not at the end."""

    def test_the_asgi_app_opens_its_upstream_connection_before_the_first_request(
        self, openai_upstream, asgi_live_server
    ):
        # The lifespan start-up warmed the event loop's client (and, on the module's first
        # import, the thread client): models calls only, before any request was sent.
        paths = [c.path for c in openai_upstream.calls]
        assert paths and set(paths) == {"/v1/models"}

    def test_frames_arrive_incrementally(self, server_url, routes, user, openai_upstream):
        openai_upstream.configure(ttft_s=TTFT_S, latency_s=LATENCY_S, answer_text=ANSWER)
        arrivals: list[tuple[str, dict[str, Any], float]] = []

        with streamed_tech_request(server_url, user) as response:
            assert response.status_code == 201
            assert response.headers["content-type"].startswith("text/event-stream")
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = json.loads(line.removeprefix("data: "))
                    arrivals.append((event, data, time.monotonic()))

        names = [name for name, _, _ in arrivals]
        assert names[0] == "route" and names[-1] == "done"
        assert set(names[1:-1]) == {"delta"}
        # One frame per word the model sent; the fake sends words that fell due together (a
        # busy machine's late wake-up) in one chunk, so a few may share a frame.
        assert len(names) - 2 >= len(ANSWER.split()) * 0.8
        deltas = [(data["text"], at) for name, data, at in arrivals if name == "delta"]
        assert "".join(text for text, _ in deltas) == ANSWER
        assert arrivals[-1][1]["answer"] == ANSWER
        assert len(openai_upstream.calls) == 1  # a chosen route: no routing call
        # The text reached the client as the model produced it, over LATENCY_S - TTFT_S
        # (1.5 s), not in one burst at the end.
        assert deltas[-1][1] - deltas[0][1] >= 1.0

    def test_the_row_exists_when_the_route_event_arrives(
        self, server_url, routes, user, openai_upstream
    ):
        openai_upstream.configure(ttft_s=TTFT_S, latency_s=LATENCY_S)

        with streamed_tech_request(server_url, user) as response:
            lines = response.iter_lines()
            assert next(lines) == "event: route"
            request_id = json.loads(next(lines).removeprefix("data: "))["id"]
            row = RequestLog.objects.get(pk=request_id)
            assert row.status == RequestStatus.RECEIVED
            rest = list(lines)
        assert "event: done" in rest
        assert RequestLog.objects.get(pk=request_id).status == RequestStatus.OK

    def test_a_client_going_away_mid_stream_leaves_a_final_row(
        self, server_url, routes, user, openai_upstream
    ):
        openai_upstream.configure(ttft_s=TTFT_S, latency_s=LATENCY_S)

        with streamed_tech_request(server_url, user) as response:
            lines = response.iter_lines()
            assert next(lines) == "event: route"
            request_id = json.loads(next(lines).removeprefix("data: "))["id"]
        # The connection is closed; the server notices at its next write.

        deadline = time.monotonic() + LATENCY_S + 3
        status = RequestStatus.RECEIVED
        while time.monotonic() < deadline:
            status = RequestLog.objects.get(pk=request_id).status
            if status != RequestStatus.RECEIVED:
                break
            time.sleep(0.1)
        assert status == RequestStatus.ABANDONED

    def test_a_client_gone_before_the_stream_starts_leaves_a_final_row(
        self, asgi_live_server, routes, user, openai_upstream, monkeypatch
    ):
        openai_upstream.configure(ttft_s=TTFT_S, latency_s=LATENCY_S)
        insert = pipeline.request_log_insert

        async def slow_insert(log):  # the view is still at work when the client leaves
            await insert(log)
            await asyncio.sleep(0.5)

        monkeypatch.setattr(pipeline, "request_log_insert", slow_insert)
        url = urllib.parse.urlsplit(asgi_live_server.url)
        body = json.dumps({"text": "TrackMan frozen (left early)", "route": "tech"}).encode()
        head = (
            f"POST {URL} HTTP/1.1\r\nHost: {url.netloc}\r\nAccept: text/event-stream\r\n"
            f"Authorization: {token_header(user)}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        with socket.create_connection((url.hostname, url.port)) as sock:
            sock.sendall(head.encode() + body)
            time.sleep(0.1)

        deadline = time.monotonic() + 5
        row = None
        while time.monotonic() < deadline:
            row = RequestLog.objects.filter(text__contains="left early").first()
            if row is not None and row.status != RequestStatus.RECEIVED:
                break
            time.sleep(0.05)
        assert row is not None and row.status == RequestStatus.ABANDONED

    def test_a_cached_answer_streams_with_no_model_call(
        self, server_url, routes, user, openai_upstream
    ):
        system_config_update(response_cache_enabled=True)
        openai_upstream.configure(answer_text=ANSWER)
        body = {"text": "TrackMan frozen in bay 3", "route": "tech"}
        headers = {**SSE, "Authorization": token_header(user)}
        with httpx2.Client(timeout=10) as http:
            first = parse_sse(http.post(f"{server_url}{URL}", json=body, headers=headers).content)
            calls = len(openai_upstream.calls)
            again = parse_sse(http.post(f"{server_url}{URL}", json=body, headers=headers).content)

        assert first[-1][1]["status"] == RequestStatus.OK
        assert [name for name, _ in again] == ["route", "delta", "done"]
        assert again[1][1]["text"] == ANSWER
        assert again[-1][1]["status"] == RequestStatus.CACHED and again[-1][1]["cached"] is True
        assert len(openai_upstream.calls) == calls
        row = RequestLog.objects.get(pk=again[0][1]["id"])
        assert row.status == RequestStatus.CACHED and row.answer == ANSWER

    def test_a_json_request_gets_the_whole_answer(self, server_url, routes, user, openai_upstream):
        openai_upstream.configure(answer_text=ANSWER)

        response = httpx2.post(
            f"{server_url}{URL}",
            json={"text": "TrackMan frozen in bay 3"},
            headers={"Authorization": token_header(user)},
            timeout=10,
        )

        assert response.status_code == 201
        body = response.json()
        assert set(body) == SUBMIT_KEYS
        assert body["answer"] == ANSWER and body["status"] == RequestStatus.OK
        assert RequestLog.objects.get(pk=body["id"]).answer == ANSWER
        # DRF's headers and the middleware's, on the one path a submit takes.
        assert response.headers["content-type"] == "application/json"
        assert response.headers["content-length"] == str(len(response.content))
        assert response.headers["allow"] == "GET, POST, HEAD, OPTIONS"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        # The answer depends on Accept (JSON or events): caches must keep them apart.
        assert response.headers["vary"] == "Accept"
        assert "set-cookie" not in response.headers

    def test_bad_input_and_a_missing_token_are_clear_json_errors(self, server_url, routes, user):
        bad = httpx2.post(
            f"{server_url}{URL}",
            json={"text": " ", "route": "golf"},
            headers={"Authorization": token_header(user), **SSE},
            timeout=10,
        )
        anonymous = httpx2.post(f"{server_url}{URL}", json={"text": "TrackMan"}, timeout=10)

        assert bad.status_code == 400
        assert bad.headers["content-type"] == "application/json"
        assert set(bad.json()) == {"text", "route"}
        assert anonymous.status_code == 401 and anonymous.json()["detail"]
        assert not RequestLog.objects.exists()

    def test_a_hanging_model_ends_in_an_error_event_within_the_deadline(
        self, server_url, routes, user, openai_upstream
    ):
        system_config_update(assistant_timeout_s=1.0, assistant_retries=0)
        openai_upstream.configure(fail="hang", hang_s=5.0)
        started = time.monotonic()

        with httpx2.Client(timeout=10) as http:
            response = http.post(
                f"{server_url}{URL}",
                json={"text": "TrackMan frozen in bay 3", "route": "tech"},
                headers={**SSE, "Authorization": token_header(user)},
            )

        elapsed = time.monotonic() - started
        events = parse_sse(response.content)
        assert events[0][0] == "route"
        assert events[-1][0] == "error"
        assert "did not answer in time" in events[-1][1]["error"]
        assert elapsed < 3.0
        row = RequestLog.objects.get(pk=events[0][1]["id"])
        assert row.status == RequestStatus.TIMEOUT
        assert row.answer == events[-1][1]["answer"]
