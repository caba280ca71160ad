"""Creating a request with ``Accept: text/event-stream``: the answer as server-sent events."""

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from assistants.backends import AssistantError, Completion, FailureKind, TextDelta
from assistants.backends.offline import OfflineBackend
from requestlogs.apis import sse_frame
from requestlogs.models import RequestLog, RequestStatus
from tests.requestlogs.api_factories import default_routes_ensure, token_client, token_header
from tests.requestlogs.factories import UserFactory

URL = "/api/v1/requests/"
SSE = {"Accept": "text/event-stream"}
REQUEST_KEYS = {
    "id",
    "status",
    "route",
    "routing",
    "answer",
    "cached",
    "escalated",
    "timings_ms",
    "created_at",
}
SLOW_PIECES = ("Restart the TrackMan app.\n", "Power-cycle the unit.\n", "Wait 10 s.\n", "Done.\n")
SLOW_DELAY_S = 0.4


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


def close_response(response, monkeypatch) -> None:
    """Close a response as the WSGI server does, but keep the test's database connection.

    Closing fires ``request_finished``, whose ``close_old_connections`` would close the
    connection that holds the test's transaction.
    """
    with monkeypatch.context() as patch:
        patch.setattr(connection, "close_if_unusable_or_obsolete", lambda: None)
        response.close()


def slow_stream(self, request) -> Iterator[TextDelta | Completion]:
    """An assistant that takes its time between pieces, like a real model."""
    for piece in SLOW_PIECES:
        time.sleep(SLOW_DELAY_S)
        yield TextDelta(piece)
    yield Completion(text="".join(SLOW_PIECES), model="offline")


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def routes():
    return default_routes_ensure()


@pytest.fixture
def user():
    return UserFactory()


@pytest.fixture
def client(user) -> APIClient:
    return token_client(user)


def test_sse_frame_is_one_event_line_and_one_compact_json_line():
    frame = sse_frame("delta", {"text": "line one\nline two"})

    assert frame == b'event: delta\ndata: {"text":"line one\\nline two"}\n\n'


@pytest.mark.django_db
class TestStreamWithTheTestClient:
    def test_route_then_deltas_then_done_with_the_full_request(self, client, routes):
        response = client.post(
            URL, {"text": "TrackMan frozen in bay 3", "route": "tech"}, format="json", headers=SSE
        )

        assert response.status_code == 201
        assert response.streaming
        assert response["Content-Type"].startswith("text/event-stream")
        assert response["Cache-Control"] == "no-cache"
        assert response["X-Accel-Buffering"] == "no"
        events = parse_sse(b"".join(response.streaming_content))
        names = [name for name, _ in events]
        assert names[0] == "route"
        assert names[-1] == "done"
        assert set(names[1:-1]) == {"delta"}

        route = events[0][1]
        assert set(route) == {"id", "route", "routing", "timings_ms"}
        assert route["route"] == {"slug": "tech", "name": routes["tech"].name}
        assert route["routing"] == {"source": "manual", "confidence": 1.0}
        assert set(route["timings_ms"]) == {"routing"}

        done = events[-1][1]
        assert set(done) == REQUEST_KEYS
        assert done["id"] == route["id"]
        assert done["status"] == "ok"
        assert done["answer"] == "".join(data["text"] for name, data in events if name == "delta")
        # The done event is the same object the detail endpoint returns.
        assert client.get(f"{URL}{done['id']}/").json() == done

    def test_the_row_is_final_when_the_stream_ends(self, client, routes):
        response = client.post(URL, {"text": "Projector flickering"}, format="json", headers=SSE)
        done = parse_sse(b"".join(response.streaming_content))[-1][1]

        row = RequestLog.objects.get(pk=done["id"])
        assert row.status == RequestStatus.OK
        assert row.answer == done["answer"]
        assert row.total_ms is not None

    def test_a_model_failure_ends_with_an_error_event(self, client, routes, monkeypatch):
        def failing_stream(self, request):
            yield TextDelta("Restart the")
            raise AssistantError(FailureKind.TIMEOUT, "no answer in 15 s")

        monkeypatch.setattr(OfflineBackend, "stream", failing_stream)

        response = client.post(
            URL, {"text": "TrackMan", "route": "tech"}, format="json", headers=SSE
        )

        assert response.status_code == 201
        events = parse_sse(b"".join(response.streaming_content))
        assert events[0][0] == "route"
        name, data = events[-1]
        assert name == "error"
        assert set(data) == REQUEST_KEYS | {"error"}
        assert data["status"] == "timeout"
        assert data["error"] == "The assistant did not answer in time."
        assert "did not answer in time" in data["answer"]
        assert RequestLog.objects.get(pk=data["id"]).status == RequestStatus.TIMEOUT

    def test_an_internal_failure_still_ends_the_stream_with_an_error_event(
        self, client, routes, monkeypatch
    ):
        def broken_stream(self, request):
            raise RuntimeError("bug")
            yield  # a generator, like every backend's stream

        monkeypatch.setattr(OfflineBackend, "stream", broken_stream)

        response = client.post(
            URL, {"text": "TrackMan", "route": "tech"}, format="json", headers=SSE
        )
        name, data = parse_sse(b"".join(response.streaming_content))[-1]

        assert name == "error"
        assert data["status"] == "error"
        assert data["error"]
        assert RequestLog.objects.get(pk=data["id"]).status == RequestStatus.ERROR

    def test_closing_the_stream_after_the_first_event_marks_the_row_final(
        self, client, routes, monkeypatch
    ):
        response = client.post(
            URL, {"text": "TrackMan frozen in bay 3", "route": "tech"}, format="json", headers=SSE
        )
        chunks = iter(response.streaming_content)
        first = parse_sse(next(chunks))
        assert first[0][0] == "route"

        close_response(response, monkeypatch)  # what the server does when the client goes away

        row = RequestLog.objects.get(pk=first[0][1]["id"])
        assert row.status == RequestStatus.ABANDONED
        assert row.route.slug == "tech"
        assert row.finished_at is not None

    def test_invalid_input_is_a_json_400_before_any_event(self, client, routes):
        response = client.post(URL, {"text": "", "route": "golf"}, format="json", headers=SSE)

        assert response.status_code == 400
        assert not response.streaming
        assert response["Content-Type"] == "application/json"
        assert set(response.json()) == {"text", "route"}
        assert not RequestLog.objects.exists()

    def test_unauthenticated_is_a_json_401_not_a_406(self, routes):
        response = APIClient().post(URL, {"text": "TrackMan"}, format="json", headers=SSE)

        assert response.status_code == 401
        assert response.json()["detail"]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
class TestStreamOverRealHttp:
    """Through a real server and socket: frames must leave as they happen, not at the end."""

    def test_frames_arrive_incrementally(self, live_server, routes, user, monkeypatch):
        monkeypatch.setattr(OfflineBackend, "stream", slow_stream)
        token = token_header(user)
        arrivals: list[tuple[str, float]] = []

        with (
            httpx2.Client(timeout=10) as http,
            http.stream(
                "POST",
                f"{live_server.url}{URL}",
                json={"text": "TrackMan frozen in bay 3", "route": "tech"},
                headers={**SSE, "Authorization": token},
            ) as response,
        ):
            assert response.status_code == 201
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("event: "):
                    arrivals.append((line.removeprefix("event: "), time.monotonic()))

        names = [name for name, _ in arrivals]
        assert names == ["route", *["delta"] * len(SLOW_PIECES), "done"]
        # Each piece reached the client when the assistant produced it.
        gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(arrivals)]
        assert all(gap >= SLOW_DELAY_S * 0.7 for gap in gaps[: len(SLOW_PIECES)])

    def test_a_client_going_away_mid_stream_leaves_a_final_row(
        self, live_server, routes, user, monkeypatch
    ):
        monkeypatch.setattr(OfflineBackend, "stream", slow_stream)
        token = token_header(user)

        with (
            httpx2.Client(timeout=10) as http,
            http.stream(
                "POST",
                f"{live_server.url}{URL}",
                json={"text": "TrackMan frozen in bay 3", "route": "tech"},
                headers={**SSE, "Authorization": token},
            ) as response,
        ):
            lines = response.iter_lines()
            assert next(lines) == "event: route"
            request_id = json.loads(next(lines).removeprefix("data: "))["id"]
        # The connection is closed; the server notices at its next write.

        deadline = time.monotonic() + SLOW_DELAY_S * len(SLOW_PIECES) + 3
        status = RequestStatus.RECEIVED
        while time.monotonic() < deadline:
            status = RequestLog.objects.get(pk=request_id).status
            if status != RequestStatus.RECEIVED:
                break
            time.sleep(0.1)
        assert status == RequestStatus.ABANDONED
