"""ClubOS under faults: each fault injected into production serving under c=50 streamed load.

    .venv/bin/python bench/faults.py [--only NAME ...] [--fault-s 10] [--json OUT]
    make faults

It starts, on loopback only, the production stack: gunicorn with the project's
``gunicorn.conf.py`` (the ``asgi`` worker, 2 workers), PostgreSQL through a TCP proxy
(``devtools.tcp_proxy``) so the connection can be cut, a private ``redis-server`` on port
``REDIS_PORT`` (6460; the shared 6379 is never touched) so it can be stopped, the project's fake
OpenAI upstream (``devtools.fake_openai``) whose failure modes stand in for the model's, and
the task worker when the project has one. Its rows go to a database of their own (``faults``,
dropped and created afresh), so every count is exact.

For each fault it runs 50 streaming clients (``Accept: text/event-stream``, closed loop, the
HTTP client of ``bench/loadgen.py``), injects the fault a few seconds in, keeps the load going
until the service has been answering again for a while (bounded), and prints one table line:

* **sent**: requests sent; **ok**: answered with a ``done`` event; **degraded**: a clean
  ``error`` event with the assistant's failure message (the row says ``timeout``/``error``);
* **client errors** by kind: an HTTP status other than 201, a broken stream (connection lost,
  or no final event), a client timeout (``REQUEST_TIMEOUT_S``);
* **500s**: HTTP 500 answers plus streams that ended with "ClubOS failed while answering";
* **rows**: ``RequestLog`` rows of this fault's requests, and whether rows == requests the
  server accepted (HTTP 201; a refusal before the row, e.g. a 503 when the database is out of
  reach, leaves none by design) and rows == requests sent;
* **received @60 s**: of those rows, how many are still ``received`` one minute after the
  fault ended (a killed worker's rows must be swept to ``abandoned`` by then);
* **recovery**: from the fault's end to the first request that succeeded, and to *steady*
  success (from then on every request sent succeeded);
* **health**: what ``/api/v1/health/`` answered while the fault lasted (status, slowest).

Bounded: each load phase stops ``MAX_AFTER_S`` after its fault at the latest, each request has
a client timeout, and the whole run takes a few minutes. Whatever happens (an error, Ctrl+C,
SIGTERM), every process it started is stopped through its own process group.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(ROOT))

import loadgen  # noqa: E402
from procs import Processes, children_of, log, wait_until  # noqa: E402
from texts import TEXTS, unique_text  # noqa: E402

RESULTS_DIR = BENCH_DIR / "results" / "faults"
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
HOST = "127.0.0.1"
DB_NAME = "faults"
PG_PORT = 5432
PG_ADMIN_DSN = f"postgresql://postgres@{HOST}:{PG_PORT}/postgres"
PG_FAULTS_DSN = f"postgresql://postgres@{HOST}:{PG_PORT}/{DB_NAME}"
REDIS_PORT = int(os.environ.get("FAULTS_REDIS_PORT", "6460"))
WORKERS = 2
CONCURRENCY = 50
USERNAME = "faults"

UPSTREAM_TTFT_S = 0.2
UPSTREAM_LATENCY_S = 1.0
UPSTREAM_TICK_S = 0.05
REQUEST_TIMEOUT_S = 30.0
"""Above the assistant's deadline (15 s) plus routing: a timeout here is the server's fault."""
ERROR_PAUSE_S = 0.25
"""A client that got an error waits this long before its next request (as a kiosk would)."""
BEFORE_S = 5.0
"""Load before each fault."""
MIN_AFTER_S = 8.0
MAX_AFTER_S = 40.0
"""Load after a fault's end: at least MIN_AFTER_S, then until STEADY_S of successes only
(the circuit breaker's 20 s cooldown included), at most MAX_AFTER_S."""
STEADY_S = 5.0
RECEIVED_CHECK_S = 60.0
HEALTH_EVERY_S = 0.5

INTERNAL_ERROR_MESSAGE = "ClubOS failed while answering this request."
API_PATH = "/api/v1/requests/"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http(
    url: str, *, method: str = "GET", body: Any = None, timeout: float = 10.0
) -> tuple[int, Any]:
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError(f"faults only talks to {HOST}: {url}")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        with contextlib.suppress(ValueError):
            return exc.code, json.loads(raw)
        return exc.code, raw.decode(errors="replace")


def base_env() -> dict[str, str]:
    """The environment minus anything that configures ClubOS or gunicorn: faults sets those."""
    drop = ("GUNICORN_", "DATABASE_", "DJANGO_", "OPENAI_", "REDIS_", "SLACK_", "ASSISTANT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def task_worker_args() -> list[str] | None:
    """The task worker ``make serve`` starts beside gunicorn (``manage.py <...worker...>``)."""
    serve = (ROOT / "Makefile").read_text().split("\nserve:", 1)[-1].split("\n\n", 1)[0]
    for line in serve.splitlines():
        if "manage.py" not in line or "worker" not in line or line.lstrip().startswith("#"):
            continue
        args = []
        for token in line.split("manage.py", 1)[1].split():
            if token in ("&", "&&", ";", "|", "\\") or "$" in token:
                break
            args.append(token.rstrip(";"))
        return [str(PYTHON), "manage.py", *args]
    return None


# --- One streamed request --------------------------------------------------------------------


@dataclass
class Outcome:
    index: int
    t_send: float
    t_done: float = 0.0
    http_status: int | None = None
    final: str | None = None
    """The last event: ``done``, ``error``, or None (none arrived)."""
    row_status: str | None = None
    message: str | None = None
    kind: str = ""
    """``ok``, ``degraded``, ``internal``, ``http NNN``, ``broken``, ``timeout``."""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


async def one_request(post: loadgen.Post, client: Any, text: str, outcome: Outcome) -> None:
    try:
        async with post(client, {"text": text, "route": "auto"}, loadgen.SSE_HEADERS) as (
            status,
            chunks,
        ):
            outcome.http_status = status
            if status != 201:
                body = b"".join([chunk async for chunk in chunks])
                outcome.kind = f"http {status}"
                outcome.detail = body[:200].decode(errors="replace")
                return
            buffer = b""
            async for chunk in chunks:
                buffer += chunk
                while b"\n\n" in buffer:
                    frame, buffer = buffer.split(b"\n\n", 1)
                    head, _, data = frame.partition(b"\n")
                    event = head[7:].decode() if head.startswith(b"event: ") else ""
                    if event in ("done", "error"):
                        payload = json.loads(data[6:])
                        outcome.final = event
                        outcome.row_status = payload.get("status")
                        outcome.message = payload.get("error")
        if outcome.final == "done":
            outcome.kind = "ok"
        elif outcome.final == "error":
            internal = outcome.message == INTERNAL_ERROR_MESSAGE
            outcome.kind = "internal" if internal else "degraded"
        else:
            outcome.kind = "broken"
            outcome.detail = "stream ended without a done/error event"
    except TimeoutError as exc:
        outcome.kind = "timeout"
        outcome.detail = repr(exc)[:200]
    except Exception as exc:
        text_ = f"{type(exc).__name__}: {exc}"
        outcome.kind = "timeout" if "Timeout" in type(exc).__name__ else "broken"
        outcome.detail = text_[:200]
    finally:
        outcome.t_done = time.monotonic()


# --- The stack ---------------------------------------------------------------------------------


@dataclass
class Stack:
    procs: Processes
    env: dict[str, str]
    base_url: str
    fake_url: str
    proxy_url: str
    """The TCP proxy's control endpoint (``devtools.tcp_proxy``, a process of its own)."""
    redis: subprocess.Popen[Any] | None = None
    gunicorn: subprocess.Popen[Any] | None = None
    worker: subprocess.Popen[Any] | None = None
    token: str = ""
    exited: dict[str, str] = field(default_factory=dict)
    """Processes that exited, and during which fault."""

    def start_redis(self) -> None:
        self.redis = self.procs.start(
            "redis",
            [
                "redis-server",
                "--bind",
                HOST,
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(RESULTS_DIR),
            ],
            env=base_env(),
            log_path=RESULTS_DIR / "redis.log",
        )
        wait_until(self.redis_up, timeout=15, what=f"redis-server on {REDIS_PORT}")

    def redis_up(self) -> bool:
        with socket.create_connection((HOST, REDIS_PORT), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.procs.stop(self.redis)
            self.redis = None

    def fake(self, **behaviour: Any) -> None:
        status, answer = http(f"{self.fake_url}/_fake/behaviour", method="POST", body=behaviour)
        if status != 200:
            raise RuntimeError(f"fake upstream: {status} {answer}")

    def pg_cut(self, mode: str) -> None:
        status, answer = http(f"{self.proxy_url}/cut?mode={mode}", method="POST")
        if status != 200 or answer.get("mode") != mode:
            raise RuntimeError(f"tcp proxy: {status} {answer}")

    def pg_restore(self) -> None:
        status, answer = http(f"{self.proxy_url}/restore", method="POST")
        if status != 200 or answer.get("mode") != "up":
            raise RuntimeError(f"tcp proxy: {status} {answer}")

    def workers(self) -> list[int]:
        assert self.gunicorn is not None
        return children_of(self.gunicorn.pid)


def prepare_database(env: dict[str, str]) -> None:
    log(f"database {DB_NAME}: drop if exists, create, migrate; collectstatic")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    for args in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v0"]):
        with open(RESULTS_DIR / f"{args[0]}.log", "wb") as handle:
            code = subprocess.call(
                [str(PYTHON), "manage.py", *args],
                cwd=ROOT,
                env=env,
                stdout=handle,
                stderr=handle,
                timeout=300,
            )
        if code != 0:
            raise RuntimeError(f"manage.py {args[0]} failed; see {RESULTS_DIR}/{args[0]}.log")
    password = secrets.token_urlsafe(16)
    script = (
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({USERNAME!r}, password={password!r})"
    )
    subprocess.run(
        [str(PYTHON), "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    env["FAULTS_PASSWORD"] = password


def start_stack(procs: Processes) -> Stack:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    env = base_env()
    fake_port, app_port, proxy_port, control_port = (free_port() for _ in range(4))
    # In a process of its own: the load's client in this one must not slow the database path.
    procs.start(
        "tcp proxy",
        [
            PYTHON,
            "-m",
            "devtools.tcp_proxy",
            "--port",
            str(proxy_port),
            "--target",
            f"{HOST}:{PG_PORT}",
            "--control-port",
            str(control_port),
        ],
        env=env,
        log_path=RESULTS_DIR / "tcp_proxy.log",
    )
    proxy_url = f"http://{HOST}:{control_port}"
    wait_until(lambda: http(f"{proxy_url}/state")[0] == 200, timeout=15, what="tcp proxy")
    fake_url = f"http://{HOST}:{fake_port}"
    app_env = {
        **env,
        # The app reaches PostgreSQL through the proxy only, so cutting it cuts the app off.
        "DATABASE_URL": f"postgres://postgres@{HOST}:{proxy_port}/{DB_NAME}",
        "REDIS_URL": f"redis://{HOST}:{REDIS_PORT}/0",
        "OPENAI_API_KEY": "faults",
        "OPENAI_BASE_URL": f"{fake_url}/v1",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_ALLOWED_HOSTS": HOST,
        # Plain HTTP on loopback: no redirect to https, cookies not marked secure.
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        "GUNICORN_BIND": f"{HOST}:{app_port}",
        "GUNICORN_WORKERS": str(WORKERS),
        # One user sends 50 streams at once: far past the per-user limit a venue needs.
        "THROTTLE_SUBMIT_RATE": "1000000/min",
    }
    stack = Stack(
        procs=procs,
        env=app_env,
        base_url=f"http://{HOST}:{app_port}",
        fake_url=fake_url,
        proxy_url=proxy_url,
    )
    stack.start_redis()
    prepare_database(app_env)
    log(f"fake upstream {fake_url}: first token {UPSTREAM_TTFT_S} s, {UPSTREAM_LATENCY_S} s a call")
    procs.start(
        "fake upstream",
        [
            PYTHON,
            "-m",
            "devtools.fake_openai",
            "--host",
            HOST,
            "--port",
            str(fake_port),
            "--ttft",
            str(UPSTREAM_TTFT_S),
            "--latency",
            str(UPSTREAM_LATENCY_S),
            "--tick",
            str(UPSTREAM_TICK_S),
            "--hang",
            "60",
        ],
        env=env,
        log_path=RESULTS_DIR / "fake_upstream.log",
    )
    log(f"gunicorn {stack.base_url}: gunicorn.conf.py, {WORKERS} workers (no access log)")
    stack.gunicorn = procs.start(
        "gunicorn",
        [GUNICORN, "-c", BENCH_DIR / "gunicorn_bench.py"],
        env=app_env,
        log_path=RESULTS_DIR / "gunicorn.log",
    )
    worker_args = task_worker_args()
    if worker_args is not None:
        log(f"task worker: {' '.join(worker_args[1:])}")
        stack.worker = procs.start(
            "task worker", worker_args, env=app_env, log_path=RESULTS_DIR / "task_worker.log"
        )
    else:
        log("no task worker in `make serve`: none started")
    wait_until(
        lambda: http(f"{fake_url}/_fake/behaviour")[0] == 200, timeout=30, what="fake upstream"
    )
    gunicorn = stack.gunicorn

    def healthy() -> bool:
        if gunicorn.poll() is not None:
            raise RuntimeError(f"gunicorn exited; see {RESULTS_DIR}/gunicorn.log")
        status, _ = http(f"{stack.base_url}/api/v1/health/", timeout=5)
        return status == 200 and len(stack.workers()) >= WORKERS

    wait_until(healthy, timeout=180, what="gunicorn: /api/v1/health/ and every worker")
    status, body = http(
        f"{stack.base_url}/api/v1/auth/token/",
        method="POST",
        body={"username": USERNAME, "password": app_env["FAULTS_PASSWORD"]},
    )
    if status != 200:
        raise RuntimeError(f"token endpoint: {status} {body}")
    stack.token = body["token"]
    return stack


# --- Faults -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    begin: Callable[[Stack], None]
    end: Callable[[Stack], None] | None
    """None: an instant fault (its end is its start)."""


def kill_one_worker(stack: Stack) -> None:
    pid = stack.workers()[0]
    log(f"SIGKILL gunicorn worker {pid}")
    os.kill(pid, signal.SIGKILL)


def upstream(mode: str) -> tuple[Callable[[Stack], None], Callable[[Stack], None]]:
    return (lambda s: s.fake(fail=mode)), (lambda s: s.fake(fail=None))


# Order: the database's outages last. The row check one minute after each fault runs while the
# next faults go on, and the abandoned-row sweep needs the database, not Redis or the model.
FAULTS = (
    Fault("worker-killed", "one gunicorn worker SIGKILLed", kill_one_worker, None),
    Fault("upstream-429", "the model answers 429", *upstream("429")),
    Fault("upstream-500", "the model answers 500", *upstream("500")),
    Fault("upstream-hang", "the model hangs", *upstream("hang")),
    Fault("upstream-disconnect", "the model drops the stream", *upstream("disconnect")),
    Fault("redis-stopped", "Redis stopped, then started", Stack.stop_redis, Stack.start_redis),
    Fault(
        "postgres-cut",
        "PostgreSQL cut at the TCP proxy: connections reset, new ones refused",
        lambda s: s.pg_cut("reset"),
        Stack.pg_restore,
    ),
    Fault(
        "postgres-blackhole",
        "PostgreSQL unreachable at the TCP proxy: nothing passes, nothing is closed",
        lambda s: s.pg_cut("blackhole"),
        Stack.pg_restore,
    ),
)


@dataclass
class FaultResult:
    name: str
    what: str
    fault_s: float
    sent: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    rows: int | None = None
    rows_by_status: dict[str, int] = field(default_factory=dict)
    duplicate_rows: int = 0
    accepted_without_row: int = 0
    """Requests answered 201 with no row: lost requests (must be 0)."""
    refused_without_row: int = 0
    """Requests refused before their row was written (4xx/503): no row by design."""
    unanswered_without_row: int = 0
    """Requests with no HTTP answer at all (connection lost before the headers) and no row."""
    rows_without_request: int = 0
    received_after: int | None = None
    first_success_s: float | None = None
    steady_success_s: float | None = None
    health: dict[str, Any] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    t_fault_end: float = 0.0
    tag: str = ""
    notes: list[str] = field(default_factory=list)


async def health_probe(stack: Stack, stop: asyncio.Event, seen: list[tuple[float, int, float]]):
    """GET /api/v1/health/ every HEALTH_EVERY_S: (when, status or 0 for no answer, seconds)."""
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            status, _ = await asyncio.to_thread(http, f"{stack.base_url}/api/v1/health/", timeout=5)
        except Exception:
            status = 0
        seen.append((t0, status, time.monotonic() - t0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEALTH_EVERY_S)


def recovery(outcomes: list[Outcome], t_end: float) -> tuple[float | None, float | None]:
    """Seconds from the fault's end to the first success, and to steady success."""
    after = sorted((o for o in outcomes if o.t_send >= t_end), key=lambda o: o.t_send)
    firsts = [o.t_done for o in after if o.ok]
    first = min(firsts) - t_end if firsts else None
    steady: float | None = None
    for o in after:
        if not o.ok:
            steady = None
        elif steady is None:
            steady = o.t_done - t_end
    if after and not after[-1].ok:
        steady = None
    return first, steady


async def run_fault(
    stack: Stack, fault: Fault, fault_s: float, number: int
) -> tuple[FaultResult, list[Outcome]]:
    tag = f"faults-{number}-{fault.name}"
    result = FaultResult(
        name=fault.name, what=fault.what, fault_s=0.0 if not fault.end else fault_s
    )
    result.tag = tag
    outcomes: list[Outcome] = []
    health: list[tuple[float, int, float]] = []
    stop_sending = asyncio.Event()
    stop_health = asyncio.Event()
    counter = iter(range(10**9))
    spec = {"base_url": stack.base_url, "token": stack.token, "timeout_s": REQUEST_TIMEOUT_S}

    async with loadgen._client(spec, CONCURRENCY) as (post, client):

        async def worker() -> None:
            while not stop_sending.is_set():
                index = next(counter)
                outcome = Outcome(index=index, t_send=time.monotonic())
                outcomes.append(outcome)
                await one_request(
                    post, client, unique_text(f"{tag}-{index:05d}", index, TEXTS), outcome
                )
                if not outcome.ok:
                    await asyncio.sleep(ERROR_PAUSE_S)

        probe = asyncio.create_task(health_probe(stack, stop_health, health))
        tasks = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
        await asyncio.sleep(BEFORE_S)
        log(f"{fault.name}: {fault.what}")
        t_begin = time.monotonic()
        await asyncio.to_thread(fault.begin, stack)
        if fault.end is not None:
            await asyncio.sleep(fault_s)
            await asyncio.to_thread(fault.end, stack)
        t_end = time.monotonic()
        result.t_fault_end = t_end
        # During the fault (an instant fault: the few seconds after it).
        during_until = t_end if fault.end is not None else t_end + 5.0
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            if now - t_end >= MAX_AFTER_S:
                break
            if now - t_end < MIN_AFTER_S:
                continue
            recent = [o for o in outcomes if o.t_done and o.t_done >= now - STEADY_S]
            if recent and all(o.ok for o in recent):
                break
        stop_sending.set()
        await asyncio.gather(*tasks)
        stop_health.set()
        await probe

    kinds = Counter(o.kind for o in outcomes)
    result.sent = len(outcomes)
    result.kinds = dict(kinds)
    result.accepted = sum(1 for o in outcomes if o.http_status == 201)
    result.first_success_s, result.steady_success_s = recovery(outcomes, t_end)
    for o in outcomes:
        if o.kind != "ok" and o.kind not in result.examples:
            result.examples[o.kind] = f"{o.row_status or ''} {o.message or ''} {o.detail}".strip()
    during = [(s, e) for t, s, e in health if t_begin <= t <= during_until]
    result.health = {
        "statuses": dict(Counter(str(s or "none") for s, _ in during)),
        "slowest_s": round(max((e for _, e in during), default=0.0), 2),
    }
    log(
        f"{fault.name}: sent {result.sent}, {dict(kinds)}, accepted {result.accepted}, "
        f"recovery {result.first_success_s} / {result.steady_success_s}"
    )
    return result, outcomes


def count_rows(result: FaultResult, outcomes: list[Outcome]) -> None:
    """This fault's rows, matched to its requests by the reference in their text."""
    with psycopg.connect(PG_FAULTS_DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT text, status FROM requestlogs_requestlog WHERE text LIKE %s",
            [f"%(ref {result.tag}-%"],
        ).fetchall()
    by_index: dict[int, str] = {}
    for text, status in rows:
        index = int(text.rsplit("-", 1)[1].rstrip(")"))
        by_index[index] = str(status)
    result.rows = len(rows)
    result.duplicate_rows = len(rows) - len(by_index)
    result.rows_by_status = dict(Counter(by_index.values()))
    result.received_after = result.rows_by_status.get("received", 0)
    sent = {o.index: o for o in outcomes}
    result.accepted_without_row = sum(
        1 for o in outcomes if o.http_status == 201 and o.index not in by_index
    )
    result.refused_without_row = sum(
        1 for o in outcomes if o.http_status not in (None, 201) and o.index not in by_index
    )
    result.unanswered_without_row = sum(
        1 for o in outcomes if o.http_status is None and o.index not in by_index
    )
    result.rows_without_request = sum(1 for index in by_index if index not in sent)


# --- The table --------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def rows_cell(r: FaultResult) -> str:
    """rows == requests: every request has its row, except those refused before it (by design)."""
    if r.rows is None:
        return "?"
    expected = r.sent - r.refused_without_row
    cell = f"{'yes' if r.rows == expected else 'NO'}: {r.rows} rows, {r.sent} sent"
    notes = []
    if r.refused_without_row:
        notes.append(f"{r.refused_without_row} refused before a row")
    if r.unanswered_without_row:
        notes.append(f"{r.unanswered_without_row} unanswered, no row")
    if r.accepted_without_row:
        notes.append(f"{r.accepted_without_row} LOST (201, no row)")
    if r.duplicate_rows or r.rows_without_request:
        notes.append(f"{r.duplicate_rows + r.rows_without_request} extra")
    return f"{cell} ({'; '.join(notes)})" if notes else cell


def table(results: list[FaultResult]) -> str:
    head = (
        "| fault | sent | ok | degraded (message) | client errors | 500s | rows == requests | "
        "received @60 s | recovery: first / steady | health during the fault |"
    )
    lines = [head, "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"]
    for r in results:
        errors = {
            k: n for k, n in r.kinds.items() if k.startswith("http ") or k in ("broken", "timeout")
        }
        errors.pop("http 500", None)
        client_errors = ", ".join(f"{k} x{n}" for k, n in sorted(errors.items())) or "0"
        five_hundreds = r.kinds.get("http 500", 0) + r.kinds.get("internal", 0)
        health = ", ".join(f"{k} x{n}" for k, n in sorted(r.health.get("statuses", {}).items()))
        health = f"{health} (slowest {r.health.get('slowest_s', 0)} s)" if health else "-"
        received = "?" if r.received_after is None else str(r.received_after)
        lines.append(
            f"| {r.name} | {r.sent} | {r.kinds.get('ok', 0)} | {r.kinds.get('degraded', 0)} | "
            f"{client_errors} | {five_hundreds} | {rows_cell(r)} | {received} | "
            f"{_seconds(r.first_success_s)} / {_seconds(r.steady_success_s)} | {health} |"
        )
    return "\n".join(lines)


def commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{sha}{' + uncommitted changes' if dirty else ''}"


# --- Main --------------------------------------------------------------------------------------


class LogTail:
    """What a log file gained since ``skip()``: the tracebacks in it, each by its last line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def skip(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def tracebacks(self) -> list[str]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode(errors="replace")
        found = []
        for block in text.split("Traceback (most recent call last):")[1:]:
            lines = [line for line in block.splitlines() if line and not line.startswith(" ")]
            found.append(lines[0][:200] if lines else "?")
        return found


async def run_all(stack: Stack, faults: list[Fault], fault_s: float) -> list[FaultResult]:
    async def count_one_minute_after(result: FaultResult, outcomes: list[Outcome]) -> None:
        """This fault's rows one minute after its end (the sweep must have run by then),
        counted while the next faults go on."""
        await asyncio.sleep(max(0.0, result.t_fault_end + RECEIVED_CHECK_S - time.monotonic()))
        await asyncio.to_thread(count_rows, result, outcomes)

    results, checks = [], []
    server_log = LogTail(RESULTS_DIR / "gunicorn.log")
    for number, fault in enumerate(faults, 1):
        server_log.skip()
        result, outcomes = await run_fault(stack, fault, fault_s, number)
        for name, proc in (("gunicorn", stack.gunicorn), ("task worker", stack.worker)):
            if proc is not None and proc.poll() is not None and name not in stack.exited:
                stack.exited[name] = fault.name
                result.notes.append(f"the {name} exited (code {proc.returncode})")
                log(f"{fault.name}: the {name} exited (code {proc.returncode})")
        tracebacks = server_log.tracebacks()
        if tracebacks:
            result.notes.append(
                f"the server logged {len(tracebacks)} traceback(s), e.g. {tracebacks[0]!r}"
            )
        results.append(result)
        checks.append(asyncio.create_task(count_one_minute_after(result, outcomes)))
    log("counting the last faults' rows one minute after their end")
    await asyncio.gather(*checks)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=[f.name for f in FAULTS], default=None)
    parser.add_argument("--fault-s", type=float, default=10.0, help="how long each fault lasts")
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "latest.json")
    args = parser.parse_args(argv)
    faults = [f for f in FAULTS if args.only is None or f.name in args.only]

    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = dt.datetime.now(dt.UTC)
    procs = Processes(ROOT)
    try:
        stack = start_stack(procs)
        results = asyncio.run(run_all(stack, faults, args.fault_s))
    finally:
        procs.stop_all()
    header = (
        f"{started:%Y-%m-%d %H:%M} UTC, commit {commit()}, `make faults` "
        f"(bench/faults.py: gunicorn {WORKERS} workers, PostgreSQL via TCP proxy + private "
        f"Redis, c={CONCURRENCY} streamed, each fault {args.fault_s:.0f} s; "
        f"task worker: {'yes' if task_worker_args() else 'none'})"
    )
    print()
    print(header)
    print()
    print(table(results))
    print()
    for r in results:
        for note in r.notes:
            print(f"{r.name}: {note}")
        if r.examples:
            print(f"{r.name}: {json.dumps(r.examples)[:600]}")
        print(f"{r.name}: rows by status {r.rows_by_status}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"header": header, "results": [asdict(r) for r in results]}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
