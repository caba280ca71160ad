"""Real processes on the test's database: the task worker (``manage.py tasks_worker``) and an
app server (uvicorn serving ``clubos.asgi``), started and SIGKILLed as a machine would.

Their tests use ``transactional_db``: what the test writes is committed, so the processes
see it, and what they write, the test sees.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The test database (pytest-django's), for another process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{db['USER']}{password}@{host}/{db['NAME']}"


def process_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "OPENAI_", "DJANGO_", "SLACK_", "TASKS_"))
    }
    env.update(
        DATABASE_URL=database_url(),
        # Few connections: PostgreSQL's are shared with the rest of the suite.
        DATABASE_POOL_MAX="3",
        DATABASE_ASYNC_POOL_MAX="2",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DJANGO_DEBUG="0",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_SECURE_COOKIES="0",
        PYTHONUNBUFFERED="1",
    )
    if "django_redis" in settings.CACHES["default"]["BACKEND"]:
        env["REDIS_URL"] = settings.CACHES["default"]["LOCATION"]
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our own argv
        [sys.executable, *argv],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: killed whole
    )


def start_worker(**env: str) -> subprocess.Popen[bytes]:
    return start(
        ["manage.py", "tasks_worker", "--no-reload", "--no-startup-delay", "--verbosity", "0"],
        process_env(**env),
    )


def start_server(port: int, **env: str) -> subprocess.Popen[bytes]:
    argv = ["-m", "uvicorn", "clubos.asgi:application", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--lifespan", "on", "--no-access-log", "--log-level", "warning"]
    proc = start(argv, process_env(**env))
    wait_for(
        lambda: _healthy(port) or proc.poll() is not None, timeout_s=90, what="the server to start"
    )
    assert proc.poll() is None, f"the server exited ({proc.returncode})"
    return proc


def _healthy(port: int) -> bool:
    with contextlib.suppress(httpx2.HTTPError):
        return httpx2.get(f"http://127.0.0.1:{port}/api/v1/health/", timeout=2).status_code == 200
    return False


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL, as a machine or a process dies: no shutdown code runs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            kill(proc)


def wait_for(condition: Callable[[], object], *, timeout_s: float, what: str) -> float:
    """Seconds until ``condition()`` held; fails the test after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.1)
    return time.monotonic() - started
