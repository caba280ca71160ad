"""ClubOS benchmark: one command, the whole stack, the figures of the performance issue side by side.

    .venv/bin/python bench/run.py [--quick]

It creates a fresh PostgreSQL database ``clubos_bench`` (dropped first if it exists), migrates it,
collects static files, flushes Redis db 2, starts the project's fake OpenAI upstream
(``clubos.fake_openai``: 0.3 s to the first token, 1.5 s per model call) and the app under
gunicorn (the project's ``gunicorn.conf.py``, access log off), then drives it with
``bench/loadgen.py`` (asyncio + httpx2 on uvloop, in processes of its own) and prints:

1. old design (LLM routing + the answer in one non-streamed JSON response) vs the new default
   (hybrid routing + SSE streaming): total and first-answer-text p50/p95 and their ratios;
2. overhead = client-observed total - the upstream's own time for that request, at 1, 50 and
   500 concurrent clients, with errors, RequestLog rows vs requests sent, and the CPU time each
   process group spent per request (server, fake upstream, PostgreSQL, client);
3. response-cache hit latency, JSON and SSE;
4. database transactions per request on a warm path, from PostgreSQL's own counters.

Every figure comes with its target and PASS/FAIL; the same goes to ``bench/results/latest.json``.
Only 127.0.0.1 is ever contacted. Every loop is bounded in count and time. Whatever happens
(an error, Ctrl+C, SIGTERM) the processes it started are stopped, each by its process group.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
import redis

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from texts import REF_RE, TECH, TEXTS, unique_text  # noqa: E402

ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
HOST = "127.0.0.1"
DB_NAME = "clubos_bench"
PG_ADMIN_DSN = f"postgresql://postgres@{HOST}:5432/postgres"
DATABASE_URL = f"postgres://postgres@{HOST}:5432/{DB_NAME}"
REDIS_URL = f"redis://{HOST}:6379/2"

UPSTREAM_TTFT_S = 0.3
UPSTREAM_LATENCY_S = 1.5
UPSTREAM_TICK_S = 0.05
# PostgreSQL 15 backends flush their statistics at most once a second, and a backend that goes
# idle with unflushed counts does so after PGSTAT_IDLE_INTERVAL (10 s): wait that long.
PG_STATS_SETTLE_S = 11.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Targets of the performance issue.
TARGET_TOTAL_RATIO = 0.55
TARGET_FIRST_TEXT_RATIO = 0.15
TARGET_OVERHEAD_P50_MS = 5.0
TARGET_OVERHEAD_P99_MS = 50.0
TARGET_OVERHEAD_AT = 50
TARGET_ERRORS_AT = 500
TARGET_CACHE_P50_MS = 5.0
TARGET_QUERIES = 3.0


@dataclass(frozen=True)
class Profile:
    name: str
    ab_concurrency: int
    ab_requests: int
    levels: tuple[tuple[int, int], ...]
    """(concurrent clients, requests) for the overhead scenario."""
    cache_repeats: int
    query_requests: int
    query_concurrency: int
    query_chosen_route: bool
    query_cache_hits: bool


FULL = Profile(
    name="full",
    ab_concurrency=10,
    ab_requests=40,
    levels=((1, 40), (50, 250), (500, 1000)),
    cache_repeats=50,
    query_requests=100,
    query_concurrency=10,
    query_chosen_route=True,
    query_cache_hits=True,
)
QUICK = Profile(
    name="quick",
    ab_concurrency=10,
    ab_requests=20,
    levels=((1, 8), (20, 40), (100, 200)),
    cache_repeats=20,
    query_requests=30,
    query_concurrency=10,
    query_chosen_route=False,
    query_cache_hits=False,
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Processes --------------------------------------------------------------------------------


class Processes:
    """Everything the bench starts, each in a session (process group) of its own."""

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[Any]]] = []
        self._files: list[IO[Any]] = []

    def start(
        self,
        name: str,
        args: Sequence[str | os.PathLike[str]],
        *,
        env: dict[str, str],
        log_path: Path | None = None,
        stdin: int | None = None,
        stdout: int | None = None,
        text: bool = False,
    ) -> subprocess.Popen[Any]:
        out: IO[Any] | int | None = stdout
        err: IO[Any] | int | None = None
        if log_path is not None:
            handle = open(log_path, "wb")  # noqa: SIM115 - closed in stop_all()
            self._files.append(handle)
            err = handle
            if out is None:
                out = handle
        proc = subprocess.Popen(
            [str(a) for a in args],
            cwd=ROOT,
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=err,
            text=text,
            start_new_session=True,
        )
        self._procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def stop_all(self) -> None:
        for name, proc in reversed(self._procs):
            try:
                self.stop(proc)
            except Exception as exc:  # keep stopping the others
                log(f"could not stop {name} (pid {proc.pid}): {exc}")
        self._procs.clear()
        for handle in self._files:
            handle.close()
        self._files.clear()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_json(url: str, *, method: str = "GET", body: Any = None, timeout: float = 30.0) -> Any:
    assert url.startswith(f"http://{HOST}:"), url  # loopback only
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, every: float = 0.25
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- CPU accounting from /proc -----------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def proc_cpu_s(pid: int, *, with_reaped_children: bool = False) -> float:
    """utime + stime of a process (plus its waited-for children), in seconds."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def children_of(pid: int) -> list[int]:
    found = []
    for child in _pids():
        fields = _stat_fields(child)
        if fields is not None and int(fields[1]) == pid:
            found.append(child)
    return found


def tree_cpu_s(root: int) -> float:
    """A process, its live children (gunicorn's workers) and the children it has reaped."""
    total = proc_cpu_s(root, with_reaped_children=True)
    for child in children_of(root):
        total += proc_cpu_s(child, with_reaped_children=True)
    return total


def comm_cpu_s(names: set[str]) -> float:
    return sum(proc_cpu_s(pid) for pid in _pids() if _comm(pid) in names)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first[:8]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class CpuWindow:
    app_s: float = 0.0
    fake_s: float = 0.0
    postgres_s: float = 0.0
    redis_s: float = 0.0
    machine_busy: float = 0.0


class CpuMeter:
    def __init__(self, app_pid: int, fake_pid: int) -> None:
        self.app_pid = app_pid
        self.fake_pid = fake_pid

    def snapshot(self) -> tuple[float, float, float, float, tuple[int, int]]:
        return (
            tree_cpu_s(self.app_pid),
            proc_cpu_s(self.fake_pid),
            comm_cpu_s({"postgres"}),
            comm_cpu_s({"redis-server"}),
            machine_ticks(),
        )

    @contextlib.contextmanager
    def window(self) -> Iterator[CpuWindow]:
        result = CpuWindow()
        before = self.snapshot()
        yield result
        after = self.snapshot()
        result.app_s = after[0] - before[0]
        result.fake_s = after[1] - before[1]
        result.postgres_s = after[2] - before[2]
        result.redis_s = after[3] - before[3]
        busy = after[4][0] - before[4][0]
        total = after[4][1] - before[4][1]
        result.machine_busy = busy / total if total else 0.0


# --- Statistics --------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile, linear between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def verdict(ok: bool | None) -> str:
    if ok is None:
        return ""
    return "PASS" if ok else "FAIL"


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header]] + [
        [fmt(c) if not isinstance(c, str) else c for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title, "-" * len(title)]
    for n, row in enumerate(cells):
        line = "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)
        )
        lines.append(line.rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- The stack ---------------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    drop = ("GUNICORN_", "DATABASE_", "DJANGO_", "OPENAI_", "REDIS_", "SLACK_", "ASSISTANT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Stack:
    procs: Processes
    app_env: dict[str, str]
    base_url: str = ""
    fake_url: str = ""
    token: str = ""
    gunicorn: subprocess.Popen[Any] | None = None
    fake: subprocess.Popen[Any] | None = None
    djctl: subprocess.Popen[Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    # -- control ----------------------------------------------------------------------------

    def ctl(self, command: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        proc = self.djctl
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(command) + "\n")
        proc.stdin.flush()
        answer = _readline(proc, timeout)
        if not answer.get("ok"):
            raise RuntimeError(f"djctl {command.get('op')}: {answer.get('error')}")
        return answer

    def config(self, **changes: Any) -> None:
        self.ctl({"op": "config", "changes": changes})

    def logs(self, ref_prefix: str) -> dict[str, Any]:
        return self.ctl({"op": "logs", "contains": f"(ref {ref_prefix}"})

    def fake_reset(self) -> None:
        http_json(f"{self.fake_url}/_fake/reset", method="POST", body={})

    def fake_calls(self) -> list[dict[str, Any]]:
        return list(http_json(f"{self.fake_url}/_fake/calls", timeout=60)["calls"])

    def fake_count(self) -> int:
        return int(http_json(f"{self.fake_url}/_fake/calls?count_only=1")["count"])


def _readline(proc: subprocess.Popen[Any], timeout: float) -> dict[str, Any]:
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise RuntimeError("djctl did not answer in time")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"djctl exited ({proc.poll()}); see bench/results/djctl.log")
    return dict(json.loads(line))


def manage(args: Sequence[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[Any]:
    with open(log_path, "wb") as handle:
        return subprocess.Popen(
            [str(PYTHON), "manage.py", *args], cwd=ROOT, env=env, stdout=handle, stderr=handle
        )


def prepare_database(env: dict[str, str]) -> None:
    log(f"database {DB_NAME}: drop if exists, create, migrate; collectstatic; flush Redis db 2")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    redis.Redis.from_url(REDIS_URL).flushdb()
    migrate = manage(["migrate", "--noinput"], env, RESULTS_DIR / "migrate.log")
    static = manage(["collectstatic", "--noinput", "-v0"], env, RESULTS_DIR / "collectstatic.log")
    for name, proc in (("migrate", migrate), ("collectstatic", static)):
        try:
            code = proc.wait(300)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise RuntimeError(f"{name} took over 300 s") from None
        if code != 0:
            raise RuntimeError(f"{name} failed ({code}); see bench/results/{name}.log")


def start_stack(procs: Processes, *, db_pool: bool) -> Stack:
    env = base_env()
    fake_port = free_port()
    app_port = free_port()
    fake_url = f"http://{HOST}:{fake_port}"
    app_env = {
        **env,
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": f"{fake_url}/v1",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_ALLOWED_HOSTS": HOST,
        "GUNICORN_BIND": f"{HOST}:{app_port}",
    }
    if db_pool:
        app_env["DATABASE_POOL"] = "1"
    stack = Stack(procs=procs, app_env=app_env, fake_url=fake_url)
    stack.base_url = f"http://{HOST}:{app_port}"

    prepare_database(app_env)

    log(f"fake upstream on {fake_url}: ttft {UPSTREAM_TTFT_S} s, latency {UPSTREAM_LATENCY_S} s")
    stack.fake = procs.start(
        "fake upstream",
        [
            PYTHON,
            "-m",
            "clubos.fake_openai",
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
        ],
        env=env,
        log_path=RESULTS_DIR / "fake_upstream.log",
    )
    log(f"gunicorn on {stack.base_url} (bench/gunicorn_bench.py = gunicorn.conf.py, no access log)")
    stack.gunicorn = procs.start(
        "gunicorn",
        [GUNICORN, "-c", BENCH_DIR / "gunicorn_bench.py"],
        env=app_env,
        log_path=RESULTS_DIR / "gunicorn.log",
    )
    stack.djctl = procs.start(
        "djctl",
        [PYTHON, BENCH_DIR / "djctl.py"],
        env=app_env,
        log_path=RESULTS_DIR / "djctl.log",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    wait_until(
        lambda: http_json(f"{fake_url}/_fake/behaviour")["latency_s"] == UPSTREAM_LATENCY_S,
        timeout=30,
        what="the fake upstream",
    )
    if _readline(stack.djctl, 120).get("ready") is not True:
        raise RuntimeError("djctl did not start")
    stack.token = stack.ctl({"op": "token"})["token"]

    def healthy() -> bool:
        assert stack.gunicorn is not None
        if stack.gunicorn.poll() is not None:
            raise RuntimeError("gunicorn exited; see bench/results/gunicorn.log")
        return bool(http_json(f"{stack.base_url}/api/v1/health/", timeout=5)["status"] == "ok")

    wait_until(healthy, timeout=120, what="gunicorn /api/v1/health/")
    # Both workers must have booted (and trained the local router) before anything is timed.
    wait_until(
        lambda: len(children_of(stack.gunicorn.pid)) >= workers_expected(),  # type: ignore[union-attr]
        timeout=60,
        what="gunicorn workers",
    )
    time.sleep(2.0)
    stack.settings = {
        "workers": workers_expected(),
        "worker_class": "gthread",
        "threads": 64,
        "database": "psycopg pool (DATABASE_POOL=1)" if db_pool else "persistent connections",
        "upstream": {
            "ttft_s": UPSTREAM_TTFT_S,
            "latency_s": UPSTREAM_LATENCY_S,
            "tick_s": UPSTREAM_TICK_S,
        },
    }
    return stack


def workers_expected() -> int:
    return os.cpu_count() or 1


# --- Load ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One loadgen run: its per-request records (merged over client processes)."""

    label: str
    mode: str
    concurrency: int
    results: list[dict[str, Any]]
    not_sent: int
    wall_s: float
    client_cpu_s: float
    client_procs: int
    loop_lag_p99_ms: float | None
    loop_lag_max_ms: float | None
    cpu: CpuWindow = field(default_factory=CpuWindow)


def make_requests(
    tag: str, count: int, *, route: str = "auto", pool: Sequence[str] = TEXTS
) -> list[dict[str, Any]]:
    """``count`` unique requests cycling through ``pool``, each with the reference tag-NNNNN."""
    items = []
    for i in range(count):
        ref = f"{tag}-{i:05d}"
        items.append({"text": unique_text(ref, i, pool), "ref": ref, "route": route})
    return items


def run_load(
    stack: Stack,
    label: str,
    items: list[dict[str, Any]],
    *,
    mode: str,
    concurrency: int,
    meter: CpuMeter | None = None,
    client_procs: int | None = None,
) -> Run:
    """Send the requests with ``concurrency`` in flight, from 1 or 2 client processes."""
    if client_procs is None:
        client_procs = 2 if concurrency >= 200 else 1
    client_procs = max(1, min(client_procs, concurrency))
    shares = [items[i::client_procs] for i in range(client_procs)]
    conc = [
        concurrency // client_procs + (1 if i < concurrency % client_procs else 0)
        for i in range(client_procs)
    ]
    tmp = RESULTS_DIR / "tmp"
    tmp.mkdir(exist_ok=True)
    deadline_s = 60 + 4 * len(items) / max(concurrency, 1) * (UPSTREAM_LATENCY_S * 2 + 1)
    launched: list[tuple[subprocess.Popen[Any], Path]] = []
    window = meter.window() if meter is not None else contextlib.nullcontext(CpuWindow())
    with window as cpu:
        for n, (share, c) in enumerate(zip(shares, conc, strict=True)):
            spec = {
                "base_url": stack.base_url,
                "token": stack.token,
                "mode": mode,
                "concurrency": c,
                "requests": share,
                "timeout_s": 60,
                "deadline_s": min(deadline_s, 600),
            }
            spec_path, out_path = tmp / f"{label}-{n}.spec.json", tmp / f"{label}-{n}.out.json"
            spec_path.write_text(json.dumps(spec))
            out_path.unlink(missing_ok=True)
            proc = stack.procs.start(
                f"loadgen {label}",
                [PYTHON, BENCH_DIR / "loadgen.py", spec_path, out_path],
                env=base_env(),
                log_path=tmp / f"{label}-{n}.log",
            )
            launched.append((proc, out_path))
        reports = []
        for proc, out_path in launched:
            try:
                code = proc.wait(min(deadline_s, 600) + 120)
            except subprocess.TimeoutExpired:
                stack.procs.stop(proc)
                raise RuntimeError(f"loadgen {label} overran its deadline") from None
            if code != 0:
                raise RuntimeError(
                    f"loadgen {label} failed ({code}); see {out_path.with_suffix('.log')}"
                )
            reports.append(json.loads(out_path.read_text()))
    results = [r for report in reports for r in report["results"]]
    lags = [report["loop_lag_ms"] for report in reports]
    return Run(
        label=label,
        mode=mode,
        concurrency=concurrency,
        results=results,
        not_sent=sum(report["not_sent"] for report in reports),
        wall_s=max(report["wall_s"] for report in reports),
        client_cpu_s=sum(report["cpu_user_s"] + report["cpu_sys_s"] for report in reports),
        client_procs=client_procs,
        loop_lag_p99_ms=max((lag["p99"] or 0.0) for lag in lags),
        loop_lag_max_ms=max((lag["max"] or 0.0) for lag in lags),
        cpu=cpu,
    )


# --- Analysis ----------------------------------------------------------------------------------


def _call_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    raw = body.get("input") if "input" in body else body.get("messages")
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        parts = []
        for message in raw:
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, str):
                    parts.append(content)
                elif isinstance(content, list):
                    parts += [p.get("text", "") for p in content if isinstance(p, dict)]
        return "\n".join(parts)
    return ""


def _is_routing_call(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    fmt_ = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    fmt_ = fmt_ or body.get("response_format")
    return isinstance(fmt_, dict) and fmt_.get("type") in ("json_schema", "json_object")


@dataclass
class Upstream:
    calls: int = 0
    routing_calls: int = 0
    own_s: float = 0.0
    first_start: float | None = None
    last_finish: float | None = None
    unfinished: int = 0


def upstream_by_ref(calls: list[dict[str, Any]]) -> dict[str, Upstream]:
    found: dict[str, Upstream] = {}
    for call in calls:
        match = REF_RE.search(_call_text(call.get("body")))
        if match is None:
            continue
        up = found.setdefault(match.group(1), Upstream())
        up.calls += 1
        up.routing_calls += _is_routing_call(call.get("body"))
        started, finished = call.get("started"), call.get("finished")
        if started is None or finished is None:
            up.unfinished += 1
            continue
        up.own_s += finished - started
        up.first_start = started if up.first_start is None else min(up.first_start, started)
        up.last_finish = finished if up.last_finish is None else max(up.last_finish, finished)
    return found


def is_error(result: dict[str, Any]) -> bool:
    return result.get("error") is not None or result.get("status") not in ("ok", "cached")


def summarise(
    run: Run, calls: list[dict[str, Any]] | None, logs: dict[str, Any] | None
) -> dict[str, Any]:
    results = run.results
    ok = [r for r in results if not is_error(r)]
    totals = [r["t_done"] - r["t_send"] for r in ok]
    first = [r["t_first_text"] - r["t_send"] for r in ok if r.get("t_first_text") is not None]
    errors = Counter(
        (r.get("error") or f"status {r.get('status')}").split(":")[0]
        for r in results
        if is_error(r)
    )
    sent = len(results)
    summary: dict[str, Any] = {
        "label": run.label,
        "mode": run.mode,
        "concurrency": run.concurrency,
        "requests_sent": sent,
        "not_sent": run.not_sent,
        "errors": sum(errors.values()) + run.not_sent,
        "error_kinds": dict(errors),
        "total_ms": {q: ms(pct(totals, q)) for q in (50, 95, 99)},
        "first_text_ms": {q: ms(pct(first, q)) for q in (50, 95, 99)},
        "routes": dict(Counter(r.get("route") for r in results)),
        "routing_sources": dict(Counter(r.get("source") for r in results)),
        "wall_s": run.wall_s,
        "throughput_rps": sent / run.wall_s if run.wall_s else None,
        "client": {
            "processes": run.client_procs,
            "cpu_s": run.client_cpu_s,
            "cpu_ms_per_request": 1000 * run.client_cpu_s / sent if sent else None,
            "loop_lag_p99_ms": run.loop_lag_p99_ms,
            "loop_lag_max_ms": run.loop_lag_max_ms,
        },
        "cpu_ms_per_request": {
            "server": 1000 * run.cpu.app_s / sent if sent else None,
            "fake_upstream": 1000 * run.cpu.fake_s / sent if sent else None,
            "postgres": 1000 * run.cpu.postgres_s / sent if sent else None,
            "redis": 1000 * run.cpu.redis_s / sent if sent else None,
            "client": 1000 * run.client_cpu_s / sent if sent else None,
        },
        "cpu_s": {
            "server": run.cpu.app_s,
            "fake_upstream": run.cpu.fake_s,
            "postgres": run.cpu.postgres_s,
            "redis": run.cpu.redis_s,
            "client": run.client_cpu_s,
        },
        "machine_cpu_busy": run.cpu.machine_busy,
        "emergency_routed": sum(1 for r in results if r.get("route") == "emergency"),
    }
    if calls is not None:
        ups = upstream_by_ref(calls)
        overhead, before, after, own, per_request_calls = [], [], [], [], []
        unmatched = 0
        for r in ok:
            up = ups.get(r.get("ref") or "")
            if up is None or up.first_start is None or up.last_finish is None or up.unfinished:
                unmatched += 1
                continue
            total = r["t_done"] - r["t_send"]
            overhead.append(total - up.own_s)
            before.append(up.first_start - r["t_send"])
            after.append(r["t_done"] - up.last_finish)
            own.append(up.own_s)
            per_request_calls.append(up.calls)
        summary["upstream"] = {
            "calls": len(calls),
            "routing_calls": sum(u.routing_calls for u in ups.values()),
            "calls_per_request": len(calls) / sent if sent else None,
            "own_ms": {q: ms(pct(own, q)) for q in (50, 95)},
            "unmatched_requests": unmatched,
        }
        summary["overhead_ms"] = {q: ms(pct(overhead, q)) for q in (50, 95, 99)}
        summary["overhead_ms"]["max"] = ms(max(overhead)) if overhead else None
        summary["before_upstream_ms"] = {q: ms(pct(before, q)) for q in (50, 99)}
        summary["after_upstream_ms"] = {q: ms(pct(after, q)) for q in (50, 99)}
    if logs is not None:
        summary["request_logs"] = logs
        summary["rows_match"] = logs["count"] == sent
    return summary


# --- Scenarios ---------------------------------------------------------------------------------


def scenario_old_vs_new(stack: Stack, profile: Profile, meter: CpuMeter) -> dict[str, Any]:
    c, n = profile.ab_concurrency, profile.ab_requests
    log(f"1. old design: routing_strategy=llm, JSON endpoint; {n} requests, {c} concurrent")
    stack.config(routing_strategy="llm")
    run_load(stack, "old-warm", make_requests("oldw", c), mode="json", concurrency=c)
    stack.fake_reset()
    old_run = run_load(
        stack, "old", make_requests("old", n), mode="json", concurrency=c, meter=meter
    )
    old = summarise(old_run, stack.fake_calls(), stack.logs("old-"))

    log(f"1. new default: routing_strategy=hybrid, SSE; {n} requests, {c} concurrent")
    stack.config(routing_strategy="hybrid")
    run_load(stack, "new-warm", make_requests("neww", c), mode="sse", concurrency=c)
    stack.fake_reset()
    new_run = run_load(
        stack, "new", make_requests("new", n), mode="sse", concurrency=c, meter=meter
    )
    new = summarise(new_run, stack.fake_calls(), stack.logs("new-"))

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    total_ratio = ratio(new["total_ms"][50], old["total_ms"][50])
    first_ratio = ratio(new["first_text_ms"][50], old["total_ms"][50])
    return {
        "old": old,
        "new": new,
        "ratios": {
            "total_p50_new_over_old": total_ratio,
            "total_p95_new_over_old": ratio(new["total_ms"][95], old["total_ms"][95]),
            "first_text_p50_new_over_old_total_p50": first_ratio,
            "first_text_p95_new_over_old_total_p95": ratio(
                new["first_text_ms"][95], old["total_ms"][95]
            ),
        },
        "pass": {
            "total_ratio": total_ratio is not None and total_ratio <= TARGET_TOTAL_RATIO,
            "first_text_ratio": first_ratio is not None and first_ratio <= TARGET_FIRST_TEXT_RATIO,
        },
    }


def scenario_overhead(stack: Stack, profile: Profile, meter: CpuMeter) -> list[dict[str, Any]]:
    levels = []
    for concurrency, count in profile.levels:
        tag = f"c{concurrency}"
        warm = max(5, concurrency)
        log(f"2. overhead at {concurrency} concurrent: warm-up {warm}, then {count} SSE requests")
        run_load(
            stack,
            f"{tag}-warm",
            make_requests(f"{tag}w", warm),
            mode="sse",
            concurrency=concurrency,
        )
        stack.fake_reset()
        run = run_load(
            stack, tag, make_requests(tag, count), mode="sse", concurrency=concurrency, meter=meter
        )
        summary = summarise(run, stack.fake_calls(), stack.logs(f"{tag}-"))
        levels.append(summary)
        log(
            f"   errors {summary['errors']}, overhead p50/p99 "
            f"{fmt(summary['overhead_ms'][50])}/{fmt(summary['overhead_ms'][99])} ms, "
            f"server CPU {fmt(summary['cpu_ms_per_request']['server'])} ms/request"
        )
    return levels


def pg_transactions() -> int:
    """Committed + rolled-back transactions of the bench database, read from another database."""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            [DB_NAME],
        ).fetchone()
    assert row is not None
    return int(row[0])


def settled_transactions() -> int:
    time.sleep(PG_STATS_SETTLE_S)
    return pg_transactions()


def scenario_cache(stack: Stack, profile: Profile) -> dict[str, Any]:
    n = profile.cache_repeats
    text = f"{TEXTS[1]} (ref cache-hit)"
    log(
        f"3. response cache on; one request, then the same text {n}x JSON and {n}x SSE, one at a time"
    )
    stack.config(response_cache_enabled=True)
    try:
        prime = run_load(
            stack, "cache-prime", [{"text": text, "ref": "cache-hit"}], mode="json", concurrency=1
        )
        prime_status = prime.results[0].get("status") if prime.results else None
        calls_before = stack.fake_count()
        queries: dict[str, Any] = {}
        if profile.query_cache_hits:
            t0 = settled_transactions()
        items = [{"text": text, "ref": "cache-hit"} for _ in range(n)]
        json_run = run_load(stack, "cache-json", items, mode="json", concurrency=1)
        if profile.query_cache_hits:
            t1 = settled_transactions()
            queries = {"transactions": t1 - t0, "requests": n, "per_request": (t1 - t0) / n}
        sse_run = run_load(stack, "cache-sse", items, mode="sse", concurrency=1)
        calls_after = stack.fake_count()
    finally:
        stack.config(response_cache_enabled=False)
    out: dict[str, Any] = {
        "prime_status": prime_status,
        "upstream_calls_during_repeats": calls_after - calls_before,
    }
    for name, run in (("json", json_run), ("sse", sse_run)):
        s = summarise(run, None, None)
        statuses = Counter(r.get("status") for r in run.results)
        p50 = s["total_ms"][50]
        out[name] = {
            "requests": len(run.results),
            "statuses": dict(statuses),
            "all_cached": statuses.get("cached", 0) == len(run.results) == n,
            "total_ms": s["total_ms"],
            "first_text_ms": s["first_text_ms"],
            "errors": s["errors"],
            "pass": p50 is not None and p50 <= TARGET_CACHE_P50_MS,
        }
    out["queries"] = queries
    out["no_upstream_calls"] = out["upstream_calls_during_repeats"] == 0
    return out


def scenario_queries(stack: Stack, profile: Profile) -> dict[str, Any]:
    k, c = profile.query_requests, profile.query_concurrency
    legs: list[tuple[str, str, str, Sequence[str]]] = [("auto", "auto", "qauto", TEXTS)]
    if profile.query_chosen_route:
        legs.append(("chosen (route=tech)", "tech", "qtech", TECH))
    log(
        f"4. database transactions per request: {k} SSE requests per leg, {c} concurrent; "
        f"waiting {PG_STATS_SETTLE_S:.0f} s around each leg for PostgreSQL's statistics"
    )
    out: dict[str, Any] = {}
    before = settled_transactions()
    for name, route, tag, pool in legs:
        items = make_requests(tag, k, route=route, pool=pool)
        run = run_load(stack, tag, items, mode="sse", concurrency=c)
        after = settled_transactions()
        errors = sum(1 for r in run.results if is_error(r))
        out[name] = {
            "requests": len(run.results),
            "errors": errors,
            "transactions": after - before,
            "per_request": (after - before) / len(run.results) if run.results else None,
            "routing_sources": dict(Counter(r.get("source") for r in run.results)),
        }
        before = after
    for name, _route, tag, _pool in legs:
        out[name]["request_logs"] = stack.logs(f"{tag}-")
        per = out[name]["per_request"]
        out[name]["pass"] = per is not None and per <= TARGET_QUERIES + 0.05
    return out


# --- Report ------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg_version = row[0] if row else "?"
        row = conn.execute("SHOW max_connections").fetchone()
        pg_max_conn = row[0] if row else "?"
    redis_version = str(redis.Redis.from_url(REDIS_URL).info("server").get("redis_version", "?"))
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "postgresql_max_connections": pg_max_conn,
        "redis": redis_version,
        "hostname": platform.node(),
    }


def render(report: dict[str, Any]) -> str:
    out: list[str] = []
    m = report["machine"]
    s = report["stack"]
    out.append(
        f"ClubOS bench ({report['profile']}) - {m['date_utc']} - {m['nproc']} CPU {m['cpu_model']}, "
        f"{m['memory_gib']} GiB, Python {m['python']}, PostgreSQL {m['postgresql']} "
        f"(max_connections {m['postgresql_max_connections']}), Redis {m['redis']}"
    )
    out.append(
        f"app: gunicorn {s['worker_class']}, {s['workers']} workers x {s['threads']} threads, "
        f"{s['database']}; upstream: fake, {s['upstream']['ttft_s']} s to first token, "
        f"{s['upstream']['latency_s']} s per model call"
    )
    out.append("")

    ab = report.get("old_vs_new")
    if ab:
        old, new, ratios = ab["old"], ab["new"], ab["ratios"]
        rows = [
            [
                "total p50 (ms)",
                old["total_ms"][50],
                new["total_ms"][50],
                ratios["total_p50_new_over_old"],
                f"<= {TARGET_TOTAL_RATIO}",
                verdict(ab["pass"]["total_ratio"]),
            ],
            [
                "total p95 (ms)",
                old["total_ms"][95],
                new["total_ms"][95],
                ratios["total_p95_new_over_old"],
                "",
                "",
            ],
            [
                "first answer text p50 (ms)",
                old["first_text_ms"][50],
                new["first_text_ms"][50],
                ratios["first_text_p50_new_over_old_total_p50"],
                f"<= {TARGET_FIRST_TEXT_RATIO} x old total",
                verdict(ab["pass"]["first_text_ratio"]),
            ],
            [
                "first answer text p95 (ms)",
                old["first_text_ms"][95],
                new["first_text_ms"][95],
                ratios["first_text_p95_new_over_old_total_p95"],
                "",
                "",
            ],
            [
                "upstream calls / request",
                old["upstream"]["calls_per_request"],
                new["upstream"]["calls_per_request"],
                "",
                "",
                "",
            ],
            [
                "upstream own time p50 (ms)",
                old["upstream"]["own_ms"][50],
                new["upstream"]["own_ms"][50],
                "",
                "",
                "",
            ],
            ["overhead p50 (ms)", old["overhead_ms"][50], new["overhead_ms"][50], "", "", ""],
            [
                "routing sources",
                _counts(old["routing_sources"]),
                _counts(new["routing_sources"]),
                "",
                "",
                "",
            ],
            [
                "requests / errors",
                f"{old['requests_sent']} / {old['errors']}",
                f"{new['requests_sent']} / {new['errors']}",
                "",
                "",
                "",
            ],
            ["RequestLog rows == sent", _rows(old), _rows(new), "", "", ""],
        ]
        out.append(
            table(
                f"1. Old design vs new default ({new['concurrency']} concurrent clients; ratio = new / old)",
                ["", "old: llm + JSON", "new: hybrid + SSE", "ratio", "target", ""],
                [[_f(c) for c in row] for row in rows],
            )
        )
        out.append("")

    levels = report.get("overhead") or []
    if levels:
        head = ["", *[f"c={lv['concurrency']}" for lv in levels], "target", ""]

        def at(level: int) -> dict[str, Any] | None:
            return next((lv for lv in levels if lv["concurrency"] == level), None)

        t50 = at(TARGET_OVERHEAD_AT)
        t500 = at(TARGET_ERRORS_AT)
        rows = [
            ["requests sent", *[lv["requests_sent"] for lv in levels], "", ""],
            [
                "errors",
                *[lv["errors"] for lv in levels],
                f"0 at c={TARGET_ERRORS_AT}",
                verdict(None if t500 is None else t500["errors"] == 0),
            ],
            [
                "RequestLog rows == sent",
                *[_rows(lv) for lv in levels],
                "all",
                verdict(all(lv.get("rows_match") for lv in levels)),
            ],
            [
                "overhead p50 (ms)",
                *[lv["overhead_ms"][50] for lv in levels],
                f"<= {TARGET_OVERHEAD_P50_MS:g} at c={TARGET_OVERHEAD_AT}",
                verdict(
                    None if t50 is None else _le(t50["overhead_ms"][50], TARGET_OVERHEAD_P50_MS)
                ),
            ],
            ["overhead p95 (ms)", *[lv["overhead_ms"][95] for lv in levels], "", ""],
            [
                "overhead p99 (ms)",
                *[lv["overhead_ms"][99] for lv in levels],
                f"<= {TARGET_OVERHEAD_P99_MS:g} at c={TARGET_OVERHEAD_AT}",
                verdict(
                    None if t50 is None else _le(t50["overhead_ms"][99], TARGET_OVERHEAD_P99_MS)
                ),
            ],
            [
                "  before upstream p50/p99 (ms)",
                *[
                    f"{fmt(lv['before_upstream_ms'][50])} / {fmt(lv['before_upstream_ms'][99])}"
                    for lv in levels
                ],
                "",
                "",
            ],
            [
                "  after upstream p50/p99 (ms)",
                *[
                    f"{fmt(lv['after_upstream_ms'][50])} / {fmt(lv['after_upstream_ms'][99])}"
                    for lv in levels
                ],
                "",
                "",
            ],
            [
                "total p50 / p95 (ms)",
                *[f"{fmt(lv['total_ms'][50])} / {fmt(lv['total_ms'][95])}" for lv in levels],
                "",
                "",
            ],
            [
                "first answer text p50 / p95 (ms)",
                *[
                    f"{fmt(lv['first_text_ms'][50])} / {fmt(lv['first_text_ms'][95])}"
                    for lv in levels
                ],
                "",
                "",
            ],
            [
                "upstream calls / request",
                *[lv["upstream"]["calls_per_request"] for lv in levels],
                "",
                "",
            ],
            ["throughput (requests/s)", *[lv["throughput_rps"] for lv in levels], "", ""],
            [
                "server CPU / request (ms)",
                *[lv["cpu_ms_per_request"]["server"] for lv in levels],
                "drive down",
                "",
            ],
            [
                "fake upstream CPU / request (ms)",
                *[lv["cpu_ms_per_request"]["fake_upstream"] for lv in levels],
                "",
                "",
            ],
            [
                "PostgreSQL CPU / request (ms)",
                *[lv["cpu_ms_per_request"]["postgres"] for lv in levels],
                "",
                "",
            ],
            [
                "Redis CPU / request (ms)",
                *[lv["cpu_ms_per_request"]["redis"] for lv in levels],
                "",
                "",
            ],
            [
                "client CPU / request (ms)",
                *[lv["cpu_ms_per_request"]["client"] for lv in levels],
                "",
                "",
            ],
            [
                "client processes / loop lag p99 (ms)",
                *[
                    f"{lv['client']['processes']} / {fmt(lv['client']['loop_lag_p99_ms'])}"
                    for lv in levels
                ],
                "",
                "",
            ],
            ["machine CPU busy (%)", *[100 * lv["machine_cpu_busy"] for lv in levels], "", ""],
        ]
        out.append(
            table(
                "2. Overhead = client total - upstream's own time (hybrid + SSE)",
                head,
                [[_f(c) for c in row] for row in rows],
            )
        )
        kinds = {lv["concurrency"]: lv["error_kinds"] for lv in levels if lv["error_kinds"]}
        if kinds:
            out.append(f"   error kinds: {kinds}")
        out.append("")

    cache = report.get("cache")
    if cache:
        rows = []
        for name in ("json", "sse"):
            c = cache[name]
            rows.append(
                [
                    f"cache hit, {name.upper()}",
                    c["total_ms"][50],
                    c["total_ms"][95],
                    c["first_text_ms"][50],
                    f"{c['statuses'].get('cached', 0)}/{c['requests']}",
                    f"<= {TARGET_CACHE_P50_MS:g} ms p50",
                    verdict(c["pass"]),
                ]
            )
        out.append(
            table(
                "3. Response cache hits (same text repeated, one at a time)",
                ["", "p50 (ms)", "p95 (ms)", "first text p50 (ms)", "status cached", "target", ""],
                [[_f(c) for c in row] for row in rows],
            )
        )
        out.append(
            f"   primed with status {cache['prime_status']!r}; upstream calls during the repeats: "
            f"{cache['upstream_calls_during_repeats']} ({verdict(cache['no_upstream_calls'])})"
        )
        out.append("")

    queries = report.get("queries")
    if queries:
        rows = []
        for name, q in queries.items():
            rows.append(
                [
                    name,
                    q["requests"],
                    q["transactions"],
                    q["per_request"],
                    f"<= {TARGET_QUERIES:g}",
                    verdict(q.get("pass")),
                ]
            )
        out.append(
            table(
                "4. Database statements per request, warm path (pg_stat_database xact_commit + xact_rollback)",
                ["path", "requests", "transactions", "per request", "target", ""],
                [[_f(c, 2) for c in row] for row in rows],
            )
        )
        out.append("")

    cpu = report.get("server_cpu_per_streamed_request_ms")
    if cpu is not None:
        out.append(
            f"5. Server CPU per streamed request (gunicorn master + workers, utime+stime from /proc, "
            f"at c={cpu['concurrency']}): {cpu['server']:.1f} ms  "
            f"(fake upstream {cpu['fake_upstream']:.1f} ms, PostgreSQL {cpu['postgres']:.1f} ms, "
            f"Redis {cpu['redis']:.1f} ms, client {cpu['client']:.1f} ms) -> "
            f"2 cores carry at most ~{2000 / cpu['server']:.0f} streamed requests/s on the app alone"
        )
        out.append("")

    verdicts = report.get("verdicts", {})
    if verdicts:
        failed = [k for k, v in verdicts.items() if v is False]
        out.append(
            "Targets: "
            + ", ".join(f"{k} {verdict(v)}" for k, v in verdicts.items())
            + (f"\nFAILED: {', '.join(failed)}" if failed else "\nall targets met")
        )
    return "\n".join(out)


def _f(value: Any, digits: int = 1) -> Any:
    if isinstance(value, float):
        return fmt(value, digits if abs(value) >= 0.1 or value == 0 else 3)
    return value


def _le(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def _counts(counts: dict[str | None, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def _rows(summary: dict[str, Any]) -> str:
    logs_ = summary.get("request_logs")
    if not logs_:
        return "-"
    mark = "==" if summary.get("rows_match") else "!="
    return f"{logs_['count']} {mark} {summary['requests_sent']}"


def verdicts_of(report: dict[str, Any]) -> dict[str, bool | None]:
    v: dict[str, bool | None] = {}
    ab = report.get("old_vs_new")
    if ab:
        v["new/old total"] = ab["pass"]["total_ratio"]
        v["first text ratio"] = ab["pass"]["first_text_ratio"]
    levels = {lv["concurrency"]: lv for lv in report.get("overhead") or []}
    if TARGET_OVERHEAD_AT in levels:
        lv = levels[TARGET_OVERHEAD_AT]
        v[f"overhead p50 @{TARGET_OVERHEAD_AT}"] = _le(
            lv["overhead_ms"][50], TARGET_OVERHEAD_P50_MS
        )
        v[f"overhead p99 @{TARGET_OVERHEAD_AT}"] = _le(
            lv["overhead_ms"][99], TARGET_OVERHEAD_P99_MS
        )
    if TARGET_ERRORS_AT in levels:
        v[f"0 errors @{TARGET_ERRORS_AT}"] = levels[TARGET_ERRORS_AT]["errors"] == 0
    if levels:
        v["RequestLog rows == sent"] = all(lv.get("rows_match") for lv in levels.values())
    cache = report.get("cache")
    if cache:
        v["cache hit p50 JSON"] = cache["json"]["pass"]
        v["cache hit p50 SSE"] = cache["sse"]["pass"]
        v["cache hits all cached, no upstream"] = (
            cache["json"]["all_cached"]
            and cache["sse"]["all_cached"]
            and cache["no_upstream_calls"]
        )
    for name, q in (report.get("queries") or {}).items():
        v[f"queries/request {name}"] = q.get("pass")
    return v


# --- Main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small run (c=1/20/100) to check the harness"
    )
    parser.add_argument("--db-pool", action="store_true", help="run the app with DATABASE_POOL=1")
    parser.add_argument(
        "--only",
        default="ab,overhead,cache,queries",
        help="comma-separated scenarios to run: ab, overhead, cache, queries",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    RESULTS_DIR.mkdir(exist_ok=True)
    started = time.monotonic()

    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    procs = Processes()
    report: dict[str, Any] = {"profile": profile.name, "machine": machine_info()}
    try:
        stack = start_stack(procs, db_pool=args.db_pool)
        assert stack.gunicorn is not None and stack.fake is not None
        report["stack"] = stack.settings
        meter = CpuMeter(stack.gunicorn.pid, stack.fake.pid)

        log("warm-up: 20 SSE + 5 JSON requests")
        run_load(stack, "warmup", make_requests("warmup", 20), mode="sse", concurrency=10)
        run_load(stack, "warmup-json", make_requests("warmupj", 5), mode="json", concurrency=5)

        if "ab" in only:
            report["old_vs_new"] = scenario_old_vs_new(stack, profile, meter)
        if "overhead" in only:
            report["overhead"] = scenario_overhead(stack, profile, meter)
            top = max(report["overhead"], key=lambda lv: lv["concurrency"])
            report["server_cpu_per_streamed_request_ms"] = {
                "concurrency": top["concurrency"],
                **top["cpu_ms_per_request"],
            }
        if "queries" in only:
            report["queries"] = scenario_queries(stack, profile)
        if "cache" in only:
            report["cache"] = scenario_cache(stack, profile)
            if report["cache"].get("queries"):
                q = report["cache"]["queries"]
                report.setdefault("queries", {})["cache hit (JSON)"] = {
                    "requests": q["requests"],
                    "errors": report["cache"]["json"]["errors"],
                    "transactions": q["transactions"],
                    "per_request": q["per_request"],
                    "pass": q["per_request"] <= TARGET_QUERIES + 0.05,
                }
        gunicorn_alive = stack.gunicorn.poll() is None
        report["gunicorn_alive_at_end"] = gunicorn_alive
    except KeyboardInterrupt:
        log("interrupted: stopping everything the bench started")
        procs.stop_all()
        return 130
    finally:
        procs.stop_all()
        with contextlib.suppress(OSError):
            for leftover in (RESULTS_DIR / "tmp").glob("*.spec.json"):
                leftover.unlink()

    report["verdicts"] = verdicts_of(report)
    report["duration_s"] = round(time.monotonic() - started, 1)
    text = render(report)
    report["text"] = text
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(text)
    print(
        f"\nfull results: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}  ({report['duration_s']} s)"
    )
    return 0 if all(v is not False for v in report["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
