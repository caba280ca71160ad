"""Throttling: submits per user, token requests per address and per username; rates from the
environment and from the admin's System configuration; counts shared in the cache; a cache
outage lets requests through."""

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from config import throttling
from config.models import SystemConfig
from config.services import system_config_update
from requestlogs.models import RequestLog
from tests.admin_forms import changeform_data
from tests.requestlogs.api_factories import default_routes_ensure, token_client
from tests.requestlogs.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

SUBMIT_URL = "/api/v1/requests/"
TOKEN_URL = "/api/v1/auth/token/"
MESSAGE = re.compile(r"^Too many requests: try again in (\d+) s\.$")


@pytest.fixture(autouse=True)
def _routes_and_cache_up() -> Iterator[None]:
    default_routes_ensure()
    throttling._cache_down_until = 0.0
    yield
    throttling._cache_down_until = 0.0


def submit(client: APIClient, **extra: str):
    return client.post(
        SUBMIT_URL, {"text": "TrackMan frozen in bay 3", "route": "tech"}, format="json", **extra
    )


def token(client: APIClient, username: str, password: str = "wrong", **extra: str):
    return client.post(
        TOKEN_URL, {"username": username, "password": password}, format="json", **extra
    )


def assert_throttled(response, max_s: int = 120) -> int:
    """A 429 with Retry-After and the human message saying the same wait (at most two
    windows: the sliding window weighs the previous one too)."""
    assert response.status_code == 429, response.content
    retry_after = int(response["Retry-After"])
    match = MESSAGE.match(response.json()["detail"])
    assert match, response.json()
    assert 1 <= retry_after <= max_s
    assert abs(int(match.group(1)) - retry_after) <= 1
    return retry_after


def with_rates(settings, **rates: str | None) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates},
    }


class TestSubmits:
    def test_the_default_lets_a_busy_person_through_and_stops_a_script(self, settings):
        assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["submit"] == "60/min"
        client = token_client(UserFactory())

        served = [submit(client).status_code for _ in range(61)]

        assert served[:60] == [201] * 60
        assert_throttled(submit(client))
        assert RequestLog.objects.count() == 60  # a refused submit leaves no row, calls no model

    def test_beyond_the_rate_a_submit_is_429_per_user_and_reading_is_not_counted(self, settings):
        with_rates(settings, submit="3/min")
        alice, bob = token_client(UserFactory()), token_client(UserFactory())

        assert [submit(alice).status_code for _ in range(3)] == [201, 201, 201]
        assert_throttled(submit(alice))
        assert_throttled(submit(alice, HTTP_ACCEPT="text/event-stream"))
        assert submit(bob).status_code == 201  # per user, not per server
        assert alice.get(SUBMIT_URL).status_code == 200  # only POST counts
        assert RequestLog.objects.count() == 4

    def test_a_client_that_waits_retry_after_gets_in(self, settings):
        with_rates(settings, submit="2/s")
        client = token_client(UserFactory())
        assert [submit(client).status_code for _ in range(2)] == [201, 201]

        wait = assert_throttled(submit(client), max_s=2)
        time.sleep(wait)

        assert submit(client).status_code == 201

    def test_an_empty_rate_switches_the_throttle_off(self, settings):
        with_rates(settings, submit=None)
        client = token_client(UserFactory())

        assert {submit(client).status_code for _ in range(5)} == {201}

    def test_the_admins_rate_overrides_the_environment_and_applies_at_once(self, settings):
        with_rates(settings, submit="100/min")
        client = token_client(UserFactory())
        assert submit(client).status_code == 201

        system_config_update(throttle_submit_rate="2/min")

        assert submit(client).status_code == 201
        assert_throttled(submit(client))
        system_config_update(throttle_submit_rate="")  # back to the environment's 100/min
        assert submit(client).status_code == 201


# Axes' cool-off (AXES_COOLOFF_MINUTES): the wait after repeated failures.
LOCKOUT_S = 15 * 60


class TestTokenEndpoint:
    def test_a_client_guessing_is_stopped_after_5_failures_from_its_address(self):
        client = APIClient()

        answers = [token(client, f"guess{n}").status_code for n in range(5)]

        assert answers == [400] * 5
        # Axes has locked the address: every username, even a right password, waits.
        user = UserFactory()
        assert_throttled(token(client, user.username, PASSWORD), max_s=LOCKOUT_S)
        assert token(client, "other", REMOTE_ADDR="10.9.8.7").status_code == 400

    def test_per_address_even_good_logins_are_limited(self, settings):
        assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["token_address"] == "10/min"
        with_rates(settings, token_address="3/min")  # fewer password hashes to wait for
        users = [UserFactory() for _ in range(4)]
        client = APIClient()

        answers = [token(client, u.username, PASSWORD).status_code for u in users[:3]]

        assert answers == [200] * 3
        assert_throttled(token(client, users[3].username, PASSWORD))

    def test_per_username_the_lock_holds_when_the_address_changes(self):
        user = UserFactory()
        client = APIClient()

        for n in range(5):
            assert token(client, user.username, REMOTE_ADDR=f"10.0.0.{n}").status_code == 400

        # A sixth address, and the right password: still refused (one account, one limit).
        response = token(client, user.username, PASSWORD, REMOTE_ADDR="10.0.0.99")
        assert_throttled(response, max_s=LOCKOUT_S)
        # Usernames are compared case-insensitively and trimmed: no way around by spelling.
        response = token(client, f" {user.username.upper()} ", REMOTE_ADDR="10.0.0.98")
        assert_throttled(response, max_s=LOCKOUT_S)

    def test_x_forwarded_for_is_ignored_unless_a_proxy_is_trusted(self, settings):
        assert settings.TRUSTED_PROXY_COUNT == 0
        assert settings.REST_FRAMEWORK["NUM_PROXIES"] == 0
        client = APIClient()
        for n in range(5):
            response = token(client, f"guess{n}", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
            assert response.status_code == 400

        response = token(client, "guess5", HTTP_X_FORWARDED_FOR="203.0.113.200")
        assert_throttled(response, max_s=LOCKOUT_S)

    def test_with_one_trusted_proxy_the_address_it_appended_is_the_client(self, settings):
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
        client = APIClient()  # every request from the proxy, 127.0.0.1
        for n in range(5):
            xff = f"6.6.6.{n}, 198.51.100.7"  # whatever the client claimed, then the proxy's
            assert token(client, f"guess{n}", HTTP_X_FORWARDED_FOR=xff).status_code == 400

        response = token(client, "guess5", HTTP_X_FORWARDED_FOR="198.51.100.7")
        assert_throttled(response, max_s=LOCKOUT_S)
        # Another client behind the same proxy has its own count.
        assert token(client, "guess6", HTTP_X_FORWARDED_FOR="198.51.100.8").status_code == 400

    def test_a_username_with_a_nul_is_a_400_and_still_counted_by_address(self):
        client = APIClient()

        for _ in range(10):  # the address rate, 10/min
            response = token(client, "\x00\xbb\xca")
            assert response.status_code == 400, response.content

        assert_throttled(token(client, "\x00x"))

    def test_token_rates_from_the_admin(self):
        system_config_update(throttle_token_address_rate="2/min")
        client = APIClient()

        assert [token(client, f"g{n}").status_code for n in range(2)] == [400, 400]
        assert_throttled(token(client, "g2"))


def test_admin_edits_the_rates_and_rejects_a_malformed_one(client):
    client.force_login(UserFactory(superuser=True))
    url = reverse("admin:config_systemconfig_change", args=[SystemConfig.SINGLETON_PK])
    page = client.get(url)
    assert b"Throttling" in page.content
    assert b"submits per user: 60/min" in page.content

    bad = client.post(url, changeform_data(page, throttle_submit_rate="lots"))
    assert bad.status_code == 200
    assert b"A rate such as 60/min" in bad.content

    saved = client.post(url, changeform_data(page, throttle_submit_rate="1/min"))
    assert saved.status_code == 302
    api = token_client(UserFactory())
    assert submit(api).status_code == 201
    assert_throttled(submit(api))


# --- A cache outage fails open ------------------------------------------------------------

REDIS_PORT = 6410


def _wait_for_port(port: int, up: bool, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise RuntimeError(f"redis on {port} did not go {'up' if up else 'down'}")


@pytest.fixture
def own_redis(settings, tmp_path) -> Iterator[subprocess.Popen[bytes]]:
    """A Redis of this test's own on REDIS_PORT as the default cache (never the shared one)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    process = subprocess.Popen(  # noqa: S603
        [binary, "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--dir", tmp_path],
        stdout=subprocess.DEVNULL,
    )
    _wait_for_port(REDIS_PORT, up=True)
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{REDIS_PORT}/0",
            "KEY_PREFIX": "clubos",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 0.25,
                "SOCKET_TIMEOUT": 0.25,
            },
        }
    }
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def test_redis_counts_and_when_it_is_down_requests_are_served(own_redis, settings, caplog):
    with_rates(settings, submit="2/min")
    client = token_client(UserFactory())
    assert [submit(client).status_code for _ in range(2)] == [201, 201]
    assert_throttled(submit(client))  # counted in this Redis

    own_redis.terminate()
    own_redis.wait(timeout=10)
    _wait_for_port(REDIS_PORT, up=False)

    started = time.monotonic()
    assert [submit(client).status_code for _ in range(3)] == [201, 201, 201]
    assert token(APIClient(), "nobody").status_code == 400  # not a 500
    assert time.monotonic() - started < 10
    assert "cache unavailable" in caplog.text
