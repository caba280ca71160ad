"""Behind a real reverse proxy (Debian's nginx on loopback, devtools/reverse_proxy.py).

The app runs under uvicorn as ``make run`` starts it (``--no-proxy-headers``: the server never
takes the client address from ``X-Forwarded-For``; the app does, per ``TRUSTED_PROXY_COUNT``,
which is DRF's ``NUM_PROXIES``). Shown here:

* a client rotating ``X-Forwarded-For`` does not escape its limit, through nginx or directly;
* with ``TRUSTED_PROXY_COUNT=1`` the address nginx saw is the one counted (two loopback
  addresses, 127.0.0.1 and 127.0.0.2, stand for two clients);
* an answer still streams through the proxy, event by event.
"""

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from axes.models import AccessAttempt

from config.services import system_config_update
from devtools.reverse_proxy import ReverseProxy, nginx_path
from tests.requestlogs.api_factories import default_routes_ensure, token_header
from tests.requestlogs.factories import UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        nginx_path() is None, reason="nginx is not installed (apt-get install -y nginx)"
    ),
]

TOKEN_URL = "/api/v1/auth/token/"
SUBMIT_URL = "/api/v1/requests/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def app_port(transactional_db) -> Iterator[int]:
    """The ASGI application under uvicorn with ``make run``'s flags, in a thread."""
    import uvicorn

    from clubos.asgi import application

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            application,
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            proxy_headers=False,  # as `make run` (Makefile): --no-proxy-headers
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, name="asgi-behind-nginx", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the ASGI test server did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def proxy(app_port: int) -> Iterator[ReverseProxy]:
    with ReverseProxy([app_port]) as running:
        yield running


@pytest.fixture
def trust_one_proxy(settings) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}


def client_from(address: str = "127.0.0.1") -> httpx2.Client:
    """An HTTP client whose connections come from ``address`` (any of 127.0.0.0/8)."""
    return httpx2.Client(transport=httpx2.HTTPTransport(local_address=address), timeout=10)


def token_attempts(http: httpx2.Client, url: str, count: int, **body: Any) -> list[int]:
    """``count`` token requests, each claiming another X-Forwarded-For address."""
    return [
        http.post(
            url + TOKEN_URL,
            json=body,
            headers={"X-Forwarded-For": f"203.0.113.{n}"},
        ).status_code
        for n in range(count)
    ]


@pytest.fixture
def three_per_address() -> None:
    # Bodies without credentials: the address throttle counts them, Axes never sees them.
    system_config_update(throttle_token_address_rate="3/min")


@pytest.mark.usefixtures("three_per_address")
class TestClientAddress:
    def test_rotating_x_forwarded_for_through_the_proxy_does_not_escape(self, proxy):
        with client_from() as http:
            answers = token_attempts(http, proxy.url, 4)

            assert answers == [400, 400, 400, 429]
            refused = http.post(proxy.url + TOKEN_URL, json={})
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["detail"].startswith("Too many requests: try again in ")

    def test_rotating_x_forwarded_for_straight_to_the_server_does_not_escape(self, app_port):
        with client_from() as http:
            answers = token_attempts(http, f"http://127.0.0.1:{app_port}", 4)

        assert answers == [400, 400, 400, 429]

    def test_with_one_trusted_proxy_each_real_client_has_its_own_count(
        self, proxy, trust_one_proxy
    ):
        with client_from("127.0.0.1") as first, client_from("127.0.0.2") as second:
            assert token_attempts(first, proxy.url, 4) == [400, 400, 400, 429]
            # Another machine behind the same proxy is not held up by the first one.
            assert token_attempts(second, proxy.url, 3) == [400, 400, 400]
            assert token_attempts(second, proxy.url, 1) == [429]

    def test_with_one_trusted_proxy_axes_records_the_address_nginx_saw(
        self, proxy, trust_one_proxy
    ):
        with client_from("127.0.0.2") as http:
            response = http.post(
                proxy.url + TOKEN_URL,
                json={"username": "nobody", "password": "wrong"},
                headers={"X-Forwarded-For": "6.6.6.6"},
            )

        assert response.status_code == 400
        assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["127.0.0.2"]

    def test_without_a_trusted_proxy_everyone_behind_it_is_one_client(self, proxy):
        # TRUSTED_PROXY_COUNT=0 behind a proxy is safe but coarse: set it to the proxy count.
        with client_from("127.0.0.1") as first, client_from("127.0.0.2") as second:
            assert token_attempts(first, proxy.url, 3) == [400, 400, 400]
            assert token_attempts(second, proxy.url, 1) == [429]


def test_an_answer_streams_through_the_proxy(proxy, openai_upstream, settings):
    default_routes_ensure()
    answer = " ".join(f"word{n}" for n in range(15))
    openai_upstream.configure(ttft_s=0.3, latency_s=1.8, answer_text=answer)
    user = UserFactory()
    arrivals: list[tuple[str, float]] = []

    with (
        client_from() as http,
        http.stream(
            "POST",
            proxy.url + SUBMIT_URL,
            json={"text": "TrackMan frozen in bay 3", "route": "tech"},
            headers={"Accept": "text/event-stream", "Authorization": token_header(user)},
        ) as response,
    ):
        assert response.status_code == 201
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                arrivals.append((event, time.monotonic()))
                if event == "done":
                    assert json.loads(line.removeprefix("data: "))["answer"] == answer

    names = [name for name, _ in arrivals]
    assert names[0] == "route" and names[-1] == "done"
    deltas = [at for name, at in arrivals if name == "delta"]
    assert len(deltas) >= 10
    # Spread over the model's 1.5 s of output, not delivered in one burst at the end.
    assert deltas[-1] - deltas[0] >= 1.0


def test_concurrent_guesses_are_counted_exactly(proxy):
    """20 guesses at one password sent at once, each from another address: the count is one
    atomic increment per request, so no more than the username's limit (5) are tried."""
    user = UserFactory()
    barrier = threading.Barrier(20)
    answers: list[int] = []

    def guess(n: int) -> None:
        with client_from(f"127.0.1.{n + 1}") as http:
            barrier.wait()
            response = http.post(
                proxy.url + TOKEN_URL, json={"username": user.username, "password": f"g{n}"}
            )
            answers.append(response.status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(answers) == 20
    assert answers.count(400) <= 5
    assert answers.count(429) >= 15
