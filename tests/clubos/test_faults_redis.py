"""A Redis outage (issue 13): everyone who signs in with a session carries on. Sessions live
in the database; every other cache use on the console's, the admin's and the API's paths
falls back or fails open. Redis here is a server of the test's own, stopped mid-test."""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.urls import reverse
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.requestlogs.api_factories import default_routes_ensure
from tests.requestlogs.factories import PASSWORD, UserFactory

REDIS_PORT = 6450

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


class OwnRedis:
    """A redis-server on its own port, with nothing saved to disk, that a test can stop."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - a fixed command line
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)


@pytest.fixture
def redis_server() -> Iterator[OwnRedis]:
    server = OwnRedis(REDIS_PORT)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_cache(redis_server, settings) -> OwnRedis:
    """The default cache on the test's own Redis, with the production cache's options."""
    options = {
        "CLIENT_CLASS": "django_redis.client.DefaultClient",
        "SOCKET_CONNECT_TIMEOUT": 0.25,
        "SOCKET_TIMEOUT": 0.25,
    }
    configured = django_settings.CACHES["default"]
    if configured["BACKEND"] == "django_redis.cache.RedisCache":
        options = {**configured.get("OPTIONS", {}), **options}
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{REDIS_PORT}/5",
            "KEY_PREFIX": "clubos",
            "OPTIONS": options,
        }
    }
    cache.set("up", 1)
    assert cache.get("up") == 1
    return redis_server


def sign_in_and_use_everything(client, user) -> list[tuple[str, int]]:
    """What a person with a session does: sign in, the console, the admin, the API. Returns
    each step's status."""
    steps: list[tuple[str, int]] = []
    response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD})
    steps.append(("console login POST", response.status_code))
    steps.append(("console", client.get("/").status_code))
    response = client.get("/api/v1/requests/")
    steps.append(("API list (session)", response.status_code))
    response = client.post(
        "/api/v1/requests/",
        {"text": "TrackMan frozen in bay 3", "route": "tech"},
        content_type="application/json",
        HTTP_X_CLUBOS_CHANNEL="web",
    )
    steps.append(("API submit (session)", response.status_code))
    client.logout()
    response = client.post(
        reverse("admin:login"),
        {"username": user.username, "password": PASSWORD, "next": "/admin/"},
    )
    steps.append(("admin login POST", response.status_code))
    steps.append(("admin index", client.get("/admin/").status_code))
    steps.append(("admin request log", client.get("/admin/requestlogs/requestlog/").status_code))
    return steps


EXPECTED = [
    ("console login POST", 302),
    ("console", 200),
    ("API list (session)", 200),
    ("API submit (session)", 201),
    ("admin login POST", 302),
    ("admin index", 200),
    ("admin request log", 200),
]


@pytest.mark.django_db
def test_with_redis_stopped_sessions_the_console_the_admin_and_the_api_keep_working(
    redis_cache, client
):
    default_routes_ensure()
    user = UserFactory(username="nora", is_staff=True, is_superuser=True)
    assert sign_in_and_use_everything(client, user) == EXPECTED  # Redis up

    client.force_login(user)  # a session from before the outage
    redis_cache.stop()
    with pytest.raises((ConnectionInterrupted, RedisConnectionError)):
        cache.get("up")

    response = client.get("/")
    assert response.status_code == 200, "a session from before the outage still works"
    client.logout()
    assert sign_in_and_use_everything(client, user) == EXPECTED  # Redis down


@pytest.mark.django_db
def test_a_session_outlives_a_redis_restart(redis_cache, client):
    user = UserFactory(username="ines")
    client.post(reverse("login"), {"username": user.username, "password": PASSWORD})
    assert client.get("/").status_code == 200
    redis_cache.stop()
    redis_cache.start()  # empty again: nothing of the session was only in Redis
    assert client.get("/").status_code == 200
