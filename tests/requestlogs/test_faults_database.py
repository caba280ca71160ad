"""PostgreSQL out of reach (issue 13), through a TCP proxy the test cuts and restores
(devtools/tcp_proxy.py), against the ASGI application on a real server: a clear 503 in
seconds, health within a second, no dead connection handed out afterwards, and every row
finished once the database is back. PostgreSQL only: SQLite has no connection to cut."""

import threading
import time
from collections.abc import Iterator

import httpx2
import pytest
from django.db import connection, connections

from devtools.tcp_proxy import TcpProxy
from requestlogs.models import RequestLog, RequestStatus
from tests.requestlogs.api_factories import token_header

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="a database connection to cut: PostgreSQL only"
    ),
    pytest.mark.django_db(transaction=True),
]

URL = "/api/v1/requests/"
SSE = {"Accept": "text/event-stream"}


@pytest.fixture
def db_proxy() -> Iterator[TcpProxy]:
    """Every connection of this process (the ORM's pool, the server loop's pool) goes to
    PostgreSQL through the proxy, from before the server starts."""
    wrapper = connections["default"]
    real = (
        wrapper.settings_dict["HOST"] or "127.0.0.1",
        int(wrapper.settings_dict["PORT"] or 5432),
    )
    proxy = TcpProxy(target=real).start()

    def reconnect(host: str, port: int) -> None:
        wrapper.close()
        wrapper.close_pool()
        wrapper.settings_dict["HOST"], wrapper.settings_dict["PORT"] = host, port

    reconnect("127.0.0.1", proxy.port)
    try:
        yield proxy
    finally:
        proxy.restore()
        reconnect(*real)
        proxy.stop()


@pytest.fixture
def server(db_proxy, asgi_live_server) -> str:
    return asgi_live_server.url


def submit(http: httpx2.Client, url: str, auth: str, text: str, **headers: str) -> httpx2.Response:
    return http.post(
        f"{url}{URL}",
        json={"text": text, "route": "tech"},
        headers={"Authorization": auth, **headers},
    )


@pytest.mark.parametrize("mode", ["reset", "blackhole"])
def test_cut_health_is_503_within_a_second_and_a_submit_503_with_retry_after(
    server, db_proxy, routes, user, openai_upstream, mode
):
    auth = token_header(user)
    with httpx2.Client(timeout=30) as http:
        assert http.get(f"{server}/api/v1/health/").status_code == 200
        assert submit(http, server, auth, "before the cut").status_code == 201
        db_proxy.cut(mode)
        started = time.monotonic()
        health = http.get(f"{server}/api/v1/health/")
        health_s = time.monotonic() - started
        started = time.monotonic()
        refused = submit(http, server, auth, "during the cut")
        submit_s = time.monotonic() - started
        db_proxy.restore()

    assert health.status_code == 503
    assert health.json()["database"] == "error"
    assert health_s < 1.0
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert "unavailable" in refused.json()["detail"]
    assert submit_s < 6.0  # the pool's and the statement's bounds, not a hang


def test_an_idle_server_hands_out_no_dead_connection_after_an_outage(
    server, db_proxy, routes, user
):
    auth = token_header(user)
    with httpx2.Client(timeout=30) as http:
        for n in range(6):  # both pools hold connections
            assert submit(http, server, auth, f"warm {n}").status_code == 201
            assert http.get(f"{server}{URL}", headers={"Authorization": auth}).status_code == 200
        db_proxy.cut("reset")  # every pooled connection dies while the server is idle
        time.sleep(5)
        db_proxy.restore()
        time.sleep(1)
        answers = []
        for n in range(10):
            answers.append(submit(http, server, auth, f"after {n}").status_code)
            answers.append(http.get(f"{server}{URL}", headers={"Authorization": auth}).status_code)
            answers.append(http.get(f"{server}/api/v1/health/").status_code)

    assert answers == [201, 200, 200] * 10


def test_an_answer_whose_final_write_failed_is_delivered_and_its_row_finished_later(
    server, db_proxy, routes, user, openai_upstream
):
    openai_upstream.configure(ttft_s=0.5, latency_s=1.5)
    auth = token_header(user)
    events: list[str] = []

    def stream() -> None:
        with (
            httpx2.Client(timeout=30) as http,
            http.stream(
                "POST",
                f"{server}{URL}",
                json={"text": "Projector dark in bay 2 (cut)", "route": "tech"},
                headers={"Authorization": auth, **SSE},
            ) as response,
        ):
            events.extend(
                line.removeprefix("event: ")
                for line in response.iter_lines()
                if line.startswith("event: ")
            )

    client = threading.Thread(target=stream)
    client.start()
    time.sleep(0.3)  # the row is in, the answer on its way
    db_proxy.cut("reset")
    client.join(10)
    time.sleep(1.5)  # the final write has failed by now; the database comes back
    db_proxy.restore()

    assert events[-1] == "done"  # the person got the answer, not "ClubOS failed"
    connection.close()  # the test's own connection died in the cut too
    deadline = time.monotonic() + 15
    row = None
    while time.monotonic() < deadline:
        row = RequestLog.objects.filter(text__contains="(cut)").first()
        if row is not None and row.status != RequestStatus.RECEIVED:
            break
        time.sleep(0.25)
    assert row is not None
    assert row.status == RequestStatus.OK
    assert row.answer and row.finished_at is not None
