"""Two app instances behind one reverse proxy: how ClubOS grows past one machine.

Two separate server processes (uvicorn serving ``clubos.asgi``, as ``make run`` does; each
could be a gunicorn on its own machine) share the test's PostgreSQL database and Redis, with
Debian's nginx in front of both (``devtools.reverse_proxy``: round-robin, streaming passed
through, ``X-Forwarded-For`` appended, so the instances trust one proxy). What one instance
writes or changes, the other serves: requests, an admin's edit (within a second), the
throttle's count; and killing one instance under load loses no request's row.

PostgreSQL + Redis only (the second run of ``.ci/run``): on the embedded default each process
would have its own cache and SQLite file, which is exactly what this setup must not have.
"""

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from django.conf import settings
from django.db import connection

from config.caching import LOCAL_FRESH_S
from config.services import system_config_update
from devtools.reverse_proxy import ReverseProxy, nginx_path
from requestlogs.models import RequestLog, RequestStatus
from requestlogs.services import request_logs_abandoned_after
from routing.models import Route
from routing.services import route_catalog_invalidate
from tests.requestlogs.api_factories import default_routes_ensure
from tests.requestlogs.factories import PASSWORD, UserFactory

ROOT = Path(__file__).resolve().parents[2]
SSE = {"Accept": "text/event-stream"}
PROPAGATION_LIMIT_S = 1.0


def _shared_services() -> str | None:
    """Why this setup cannot run here, or None when it can."""
    if nginx_path() is None:
        return "nginx is not installed (apt-get install nginx; .ci/run installs it)"
    if connection.vendor != "postgresql":
        return "two instances must share PostgreSQL (run with DATABASE_URL=postgres://...)"
    if "django_redis" not in settings.CACHES["default"]["BACKEND"]:
        return "two instances must share Redis (run with REDIS_URL=redis://...)"
    return None


@pytest.fixture(autouse=True, scope="module")
def _needs_nginx_postgres_and_redis() -> None:
    reason = _shared_services()
    if reason is not None:
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _database_url() -> str:
    """The test database (pytest-django's), which both instances use."""
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        f"/{db['NAME']}"
    )


@dataclass
class Instance:
    """One app server process: uvicorn serving ``clubos.asgi`` on its own port."""

    name: str
    env: dict[str, str]
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Instance":
        self.process = subprocess.Popen(  # noqa: S603 - our own argv
            [
                sys.executable,
                "-m",
                "uvicorn",
                "clubos.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--lifespan",
                "on",
                "--no-access-log",
                # The app alone decides what X-Forwarded-For is worth (TRUSTED_PROXY_COUNT).
                "--no-proxy-headers",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"instance {self.name} exited ({self.process.returncode})")
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(f"{self.url}/api/v1/health/", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"instance {self.name} did not answer in {timeout_s:.0f} s")

    def kill(self) -> None:
        """SIGKILL, as a machine or a process dies: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Cluster:
    a: Instance
    b: Instance
    proxy: ReverseProxy
    tasks_worker: subprocess.Popen[bytes]

    def restart(self, instance: Instance) -> None:
        instance.stop()
        instance.start().wait_ready()


@pytest.fixture(scope="module")
def cluster(django_db_setup, fake_openai_server) -> Iterator[Cluster]:
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_", "REDIS_", "OPENAI_", "DJANGO_", "THROTTLE_"))
        },
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.CACHES["default"]["LOCATION"],
        # Few connections each: PostgreSQL's are shared with the rest of the suite.
        "DATABASE_POOL_MAX": "4",
        "DATABASE_ASYNC_POOL_MAX": "2",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": fake_openai_server.base_url,
        "ASSISTANT_BACKEND": "openai-responses",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Plain HTTP on loopback (TLS would end at the proxy in production).
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        # Behind one proxy: its X-Forwarded-For entry is the client's address.
        "TRUSTED_PROXY_COUNT": "1",
        # Load from one user: the per-user limit is set where a test wants one.
        "THROTTLE_SUBMIT_RATE": "100000/min",
        "PYTHONUNBUFFERED": "1",
    }
    # Production serves static files from collectstatic's manifest (the admin's pages need it).
    if not (Path(settings.STATIC_ROOT) / "staticfiles.json").exists():
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
        )
    a, b = Instance("A", env).start(), Instance("B", env).start()
    # The task worker `make serve` runs beside the servers, sweeping every second here, with
    # no margin beyond the longest request's deadlines.
    tasks_worker = subprocess.Popen(
        [sys.executable, "manage.py", "tasks_worker", "--verbosity", "0"],
        cwd=ROOT,
        env={**env, "TASKS_SWEEP_INTERVAL_S": "1", "REQUEST_ABANDONED_MARGIN_S": "0"},
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        a.wait_ready()
        b.wait_ready()
        with ReverseProxy([a.url.removeprefix("http://"), b.url.removeprefix("http://")]) as proxy:
            yield Cluster(a=a, b=b, proxy=proxy, tasks_worker=tasks_worker)
    finally:
        a.stop()
        b.stop()
        os.killpg(tasks_worker.pid, signal.SIGTERM)
        try:
            tasks_worker.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(tasks_worker.pid, signal.SIGKILL)


@dataclass
class Staff:
    username: str
    token: str


@pytest.fixture
def staff(cluster: Cluster, transactional_db) -> Staff:
    default_routes_ensure()
    # This test's routes are new rows (the last test's were flushed): let the instances'
    # own copies of the catalog and config (checked once a second) see them, as they would
    # see an admin's edit.
    route_catalog_invalidate()
    time.sleep(LOCAL_FRESH_S + 0.2)
    user = UserFactory(is_staff=True, is_superuser=True)
    answer = httpx2.post(
        f"{cluster.proxy.url}/api/v1/auth/token/",
        json={"username": user.username, "password": PASSWORD},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return Staff(username=user.username, token=answer.json()["token"])


def _auth(staff: Staff) -> dict[str, str]:
    return {"Authorization": f"Token {staff.token}"}


def _submit(base_url: str, staff: Staff, text: str, route: str = "tech") -> httpx2.Response:
    return httpx2.post(
        f"{base_url}/api/v1/requests/",
        json={"text": text, "route": route},
        headers=_auth(staff),
        timeout=30,
    )


def test_both_instances_serve_one_database_and_one_cache(cluster, staff, fake_openai_server):
    written_on_a = _submit(cluster.a.url, staff, "TrackMan frozen in bay 3")
    assert written_on_a.status_code == 201, written_on_a.text

    read_on_b = httpx2.get(
        f"{cluster.b.url}/api/v1/requests/{written_on_a.json()['id']}/",
        headers=_auth(staff),
        timeout=10,
    )
    assert read_on_b.status_code == 200
    assert read_on_b.json()["answer"] == written_on_a.json()["answer"]
    for instance in (cluster.a, cluster.b):
        health = httpx2.get(f"{instance.url}/api/v1/health/", timeout=5)
        assert health.status_code == 200, health.text
    # Through the proxy, whichever instance answers, the same list.
    listed = {
        tuple(
            r["id"]
            for r in httpx2.get(
                f"{cluster.proxy.url}/api/v1/requests/", headers=_auth(staff), timeout=10
            ).json()["results"]
        )
        for _ in range(4)
    }
    assert listed == {(written_on_a.json()["id"],)}


def _admin_login(base_url: str, username: str) -> httpx2.Client:
    client = httpx2.Client(base_url=base_url, timeout=10)
    page = client.get("/admin/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert csrf is not None, page.text[:500]
    done = client.post(
        "/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": csrf.group(1), "username": username, "password": PASSWORD},
    )
    assert done.status_code == 302, done.text[:500]
    return client


def _route_slugs(base_url: str, staff: Staff) -> set[str]:
    answer = httpx2.get(f"{base_url}/api/v1/routes/", headers=_auth(staff), timeout=10)
    assert answer.status_code == 200
    body = answer.json()
    items = body["results"] if isinstance(body, dict) else body
    return {item["slug"] for item in items}


def test_an_admin_edit_on_one_instance_is_served_by_the_other_within_a_second(cluster, staff):
    booking = Route.objects.get(slug="booking")
    # Both instances have the route catalog in hand (a warm, cached read) before the edit.
    assert "booking" in _route_slugs(cluster.a.url, staff)
    assert "booking" in _route_slugs(cluster.b.url, staff)

    admin = _admin_login(cluster.a.url, staff.username)
    try:
        changelist = admin.get("/admin/routing/route/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', changelist.text)
        assert csrf is not None
        edited = admin.post(
            "/admin/routing/route/",
            data={
                "csrfmiddlewaretoken": csrf.group(1),
                "action": "disable_routes",
                "_selected_action": str(booking.pk),
                "index": "0",
                "select_across": "0",
            },
        )
    finally:
        admin.close()
    assert edited.status_code == 302, edited.text[:500]
    t_saved = time.monotonic()  # the edit was committed before A answered

    assert "booking" not in _route_slugs(cluster.a.url, staff)  # the editing instance: at once
    while True:
        t_sent = time.monotonic() - t_saved
        if "booking" not in _route_slugs(cluster.b.url, staff):
            break
        # No request sent to B a second after the save may see the old routes (the 0.1 s:
        # B's own check of the shared version is timed when its read of it returns).
        assert t_sent <= PROPAGATION_LIMIT_S + 0.1, "B still serves the old routes"
        time.sleep(0.05)
    print(f"\nadmin edit on A served by B to a request sent {t_sent:.2f} s after the save")
    refused = _submit(cluster.b.url, staff, "Customer locked out, door code", route="booking")
    assert refused.status_code == 400
    assert "route" in refused.json()


def test_the_throttle_counts_requests_on_both_instances_together(cluster, staff):
    # Per day: the throttle's fixed window (from midnight UTC) does not restart mid-test.
    system_config_update(throttle_submit_rate="4/day")
    time.sleep(PROPAGATION_LIMIT_S + 0.2)  # both instances see the new rate within a second

    answers = [
        _submit(instance.url, staff, f"Projector in bay {n} shows no image")
        for n, instance in enumerate([cluster.a, cluster.b] * 4)
    ]
    statuses = [a.status_code for a in answers]
    assert statuses == [201] * 4 + [429] * 4  # 2 + 2 served, then both refuse: one count
    for refused in answers[4:]:
        assert int(refused.headers["Retry-After"]) > 0
        assert "Too many requests" in refused.json()["detail"]


async def _streamed_load(
    url: str, staff: Staff, tag: str, *, concurrency: int, duration_s: float
) -> list[dict[str, Any]]:
    """``concurrency`` clients sending streamed submits for ``duration_s`` (closed loop)."""
    outcomes: list[dict[str, Any]] = []
    stop_at = time.monotonic() + duration_s
    counter = iter(range(10**6))
    async with httpx2.AsyncClient(
        base_url=url, headers=_auth(staff), timeout=30, trust_env=False
    ) as client:

        async def one_client() -> None:
            while time.monotonic() < stop_at:
                n = next(counter)
                outcome: dict[str, Any] = {"n": n, "status": None, "final": None}
                outcomes.append(outcome)
                body = {"text": f"Bay {n % 8} PC is stuck on a blue screen (ref {tag}-{n})"}
                try:
                    async with client.stream(
                        "POST", "/api/v1/requests/", json={**body, "route": "tech"}, headers=SSE
                    ) as response:
                        outcome["status"] = response.status_code
                        async for line in response.aiter_lines():
                            if line in ("event: done", "event: error"):
                                outcome["final"] = line.removeprefix("event: ")
                except httpx2.HTTPError as exc:
                    outcome["error"] = type(exc).__name__
                    await asyncio.sleep(0.1)

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return outcomes


def test_killing_one_instance_under_load_loses_no_row(cluster, staff, fake_openai_server):
    fake_openai_server.configure(ttft_s=0.1, latency_s=1.0)
    tag = "two-instances-kill"
    system_config_update(throttle_submit_rate="")  # the server's rate: no limit for this load
    time.sleep(PROPAGATION_LIMIT_S + 0.2)

    async def load_and_kill() -> list[dict[str, Any]]:
        load = asyncio.create_task(
            _streamed_load(cluster.proxy.url, staff, tag, concurrency=20, duration_s=5.0)
        )
        await asyncio.sleep(2.0)
        await asyncio.to_thread(cluster.a.kill)
        return await load

    try:
        outcomes = asyncio.run(load_and_kill())
    finally:
        fake_openai_server.reset()
        cluster.restart(cluster.a)

    rows = {
        int(text.rsplit("-", 1)[1].rstrip(")")): status
        for text, status in RequestLog.objects.filter(text__contains=f"(ref {tag}-").values_list(
            "text", "status"
        )
    }
    accepted = [o for o in outcomes if o["status"] == 201]
    finished = [o for o in accepted if o["final"] == "done"]
    cut_off = [o for o in accepted if o["final"] is None]
    summary = json.dumps(
        {
            "sent": len(outcomes),
            "accepted": len(accepted),
            "finished": len(finished),
            "cut off": len(cut_off),
            "other": [o for o in outcomes if o["status"] != 201][:5],
            "rows": len(rows),
        }
    )
    print(f"\nkilled instance A under load: {summary}")
    assert finished and cut_off, summary  # both instances served, and the kill cut streams
    # Anything but a 201 can only be nginx's 502 for a request A took just as it died (a POST
    # is never sent on to the other instance): never a refusal or an error of the app's.
    assert {o["status"] for o in outcomes} <= {201, 502}, summary
    assert all(o["n"] in rows for o in accepted), summary  # every accepted request has its row
    assert len(rows) <= len(outcomes), summary  # and no row without a request
    assert all(rows[o["n"]] == RequestStatus.OK for o in finished), summary
    # The killed instance's rows stay `received` until the task worker's scheduled sweep marks
    # them `abandoned`: once older than the longest a request may take (the LLM router's
    # timeout and the assistant's deadline, cut to 1 s now that the load is over).
    left = {n for n, status in rows.items() if status == RequestStatus.RECEIVED}
    assert left, summary
    system_config_update(assistant_timeout_s=1.0)
    deadline = time.monotonic() + request_logs_abandoned_after().total_seconds() + 10
    ours = RequestLog.objects.filter(text__contains=f"(ref {tag}-")
    while ours.filter(status=RequestStatus.RECEIVED).exists():
        assert time.monotonic() < deadline, "the sweep did not run"
        time.sleep(0.5)
    assert ours.filter(status=RequestStatus.ABANDONED).count() == len(left)
