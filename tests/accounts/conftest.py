"""Fixtures for the token tests: a Redis of the test's own, and ClubOS served by real
uvicorn processes (two workers of one deployment) on the test's database and that Redis."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
# The brief's port for a Redis the tests may stop; another is picked if it is taken.
OWN_REDIS_PORT = 6420


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class OwnRedis:
    """A redis-server on its own loopback port, saving nothing, that a test may stop."""

    def __init__(self) -> None:
        self.port = OWN_REDIS_PORT if _port_free(OWN_REDIS_PORT) else free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603
            [
                *(shutil.which("redis-server") or "redis-server", "--port", str(self.port)),
                *("--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
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
def own_redis() -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server")
    server = OwnRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis_cache(own_redis: OwnRedis, settings) -> OwnRedis:
    """This process's default cache on ``own_redis``, with production's options."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": own_redis.url,
            "KEY_PREFIX": "clubos",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 0.25,
                "SOCKET_TIMEOUT": 0.25,
            },
        }
    }
    from accounts.authentication import api_token_forget_all

    api_token_forget_all()
    return own_redis


@dataclass
class Server:
    """One ClubOS server process (uvicorn, the ASGI application ``make run`` serves)."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def call(
        self, method: str, path: str, *, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Token {token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw


def _database_url() -> str:
    settings_dict = connection.settings_dict
    if connection.vendor == "postgresql":
        host = settings_dict["HOST"] or "127.0.0.1"
        port = settings_dict["PORT"] or 5432
        user = settings_dict["USER"] or "postgres"
        return f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"
    return f"sqlite:///{settings_dict['NAME']}"


@pytest.fixture
def start_server(
    transactional_db, own_redis_cache: OwnRedis, tmp_path: Path
) -> Iterator[Callable[..., Server]]:
    """``start_server(**env)``: a ClubOS server process on the test's database (committed
    data: the test is transactional) and ``own_redis``, waited for until it answers."""
    servers: list[Server] = []

    def start(**env: str) -> Server:
        port = free_port()
        log = tmp_path / f"server-{port}.log"
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "API_"))},
            "DJANGO_SECRET_KEY": "insecure-test-only-key",
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_SECURE_COOKIES": "0",
            "DJANGO_SECURE_HSTS_SECONDS": "0",
            "DATABASE_URL": _database_url(),
            "DATABASE_POOL_MAX": "3",
            "DATABASE_ASYNC_POOL_MAX": "2",
            "REDIS_URL": own_redis_cache.url,
            **env,
        }
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603
                [
                    *(sys.executable, "-m", "uvicorn", "clubos.asgi:application"),
                    *("--host", "127.0.0.1", "--port", str(port), "--lifespan", "on"),
                    *("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
                ],
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Server(url=f"http://127.0.0.1:{port}", process=process, log=log)
        servers.append(server)
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
            try:
                if server.call("GET", "/api/v1/health/")[0] in (200, 503):
                    return server
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)
