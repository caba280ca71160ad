"""ClubOS benchmark: one command, the whole stack, the figures of the performance issue side by side.

    .venv/bin/python bench/run.py [--quick]

It creates a fresh PostgreSQL database ``clubos_bench`` (dropped first if it exists), migrates it,
collects static files, flushes Redis db 2, starts the project's fake OpenAI upstream
(``devtools.fake_openai``: first token after 0.3 s, 1.5 s per model call) and the app under gunicorn
(the project's ``gunicorn.conf.py``, access log off), drives it with ``bench/loadgen.py`` (asyncio
on uvloop, in processes of its own) and prints, with targets and PASS/FAIL:

1. the old design (LLM routing + the answer in one JSON response) vs the new default (hybrid
   routing + SSE streaming): total and first-answer-text p50/p95 and their ratios;
2. overhead = client-observed total - the upstream's own time for that request, at 1, 50 and 500
   concurrent clients, with errors, RequestLog rows vs requests sent, and the CPU time that the
   server, the fake upstream, PostgreSQL, Redis and the client spent per request;
3. response-cache hit latency, JSON and SSE;
4. database statements per request on a warm path, from PostgreSQL's own counters;
5. server CPU time per streamed request.

The same goes to ``bench/results/latest.json`` (per-request records: ``latest-requests.json``).
Only 127.0.0.1 is contacted; every loop is bounded in count and time; whatever happens (an error,
Ctrl+C, SIGTERM) the processes it started are stopped, each through its own process group.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import time
import timeit
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
import redis

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import report as rep  # noqa: E402
from analysis import Run, is_error, summarise  # noqa: E402
from procs import (  # noqa: E402
    CpuMeter,
    CpuWindow,
    Processes,
    children_of,
    log,
    machine_ticks,
    wait_until,
)
from texts import TECH, TEXTS, unique_text  # noqa: E402

ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
TMP_DIR = RESULTS_DIR / "tmp"
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
# PostgreSQL (15+) backends flush their statistics at most once a second; one that goes idle
# with counts still pending flushes them after PGSTAT_IDLE_INTERVAL, 10 s. Wait that long.
PG_STATS_SETTLE_S = 11.0
QUIET_BUSY = 0.15
"""The machine counts as quiet below this share of busy CPU time (the bench's own idle stack
burns far less)."""
REQUEST_TIMEOUT_S = 60.0


STEADY, BURST = "steady", "burst"


@dataclass(frozen=True)
class Profile:
    name: str
    ab_concurrency: int
    ab_requests: int
    levels: tuple[tuple[int, int, str], ...]
    """(concurrent clients, requests, arrival) of the overhead scenario; arrival is
    ``steady`` (the clients start one request's duration apart) or ``burst`` (all at once)."""
    cache_repeats: int
    query_requests: int
    query_concurrency: int
    query_chosen_route: bool
    query_cache_hits: bool
    warm_min: int = 5
    """Warm-up requests before each overhead level: max(warm_min, concurrency)."""
    idle_s: float = 5.0
    """Seconds of idle stack measured after the warm-up."""


FULL = Profile(
    name="full",
    ab_concurrency=10,
    ab_requests=40,
    levels=((1, 40, STEADY), (50, 250, STEADY), (50, 250, BURST), (500, 1000, BURST)),
    cache_repeats=50,
    query_requests=100,
    query_concurrency=10,
    query_chosen_route=True,
    query_cache_hits=True,
)
QUICK = Profile(
    name="quick",
    ab_concurrency=10,
    ab_requests=10,
    levels=((1, 5, STEADY), (20, 40, STEADY), (100, 200, BURST)),
    cache_repeats=20,
    query_requests=30,
    query_concurrency=10,
    query_chosen_route=False,
    query_cache_hits=False,
    warm_min=2,
    idle_s=3.0,
)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_json(url: str, *, method: str = "GET", body: Any = None, timeout: float = 30.0) -> Any:
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError(f"the bench only talks to {HOST}: {url}")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def base_env() -> dict[str, str]:
    """The environment minus anything that configures ClubOS or gunicorn: the bench sets those."""
    drop = ("GUNICORN_", "DATABASE_", "DJANGO_", "OPENAI_", "REDIS_", "SLACK_", "ASSISTANT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def client_library(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return "httpx2"
    return "aiohttp"


# --- The stack ---------------------------------------------------------------------------------


class PgStats:
    """PostgreSQL's own counters for the bench database.

    ``pg_stat_database`` is read over a connection to the ``postgres`` database, so reading it
    adds nothing to the bench database's counts. Per-table counts (``pg_stat_user_tables``) can
    only be read from inside the bench database: that connection's own statements (one per
    read) are counted and subtracted. Both connections are opened before any load, so they still
    get in when the app has taken every other connection PostgreSQL allows.
    """

    TABLES_SQL = (
        "SELECT relname, coalesce(seq_scan, 0) + coalesce(idx_scan, 0), n_tup_ins, n_tup_upd, "
        "n_tup_del FROM pg_stat_user_tables"
    )

    def __init__(self) -> None:
        self.admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True)
        self.bench = psycopg.connect(
            DATABASE_URL.replace("postgres://", "postgresql://"), autocommit=True
        )
        self.own_statements = 0

    def snapshot(self) -> tuple[int, dict[str, tuple[int, int, int, int]]]:
        """(transactions of the bench database not run by the bench, per-table counters)."""
        self.admin.execute("SELECT pg_stat_clear_snapshot()")
        row = self.admin.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            [DB_NAME],
        ).fetchone()
        if row is None:
            raise RuntimeError(f"no pg_stat_database row for {DB_NAME}")
        transactions = int(row[0]) - self.own_statements
        self.own_statements += 1
        tables = {
            str(name): (int(scans), int(ins), int(upd), int(dels))
            for name, scans, ins, upd, dels in self.bench.execute(self.TABLES_SQL).fetchall()
        }
        return transactions, tables

    def connections(self) -> dict[str, int]:
        """Client connections now: to the bench database, and to the whole server."""
        row = self.admin.execute(
            "SELECT count(*) FILTER (WHERE datname = %s), count(*) FILTER (WHERE backend_type = "
            "'client backend'), current_setting('max_connections')::int FROM pg_stat_activity",
            [DB_NAME],
        ).fetchone()
        assert row is not None
        return {"bench_db": int(row[0]), "server": int(row[1]), "max": int(row[2])}

    def close(self) -> None:
        self.admin.close()
        self.bench.close()


def statements_delta(
    before: tuple[int, dict[str, tuple[int, int, int, int]]],
    after: tuple[int, dict[str, tuple[int, int, int, int]]],
    requests: int,
) -> dict[str, Any]:
    """Transactions per request, and what each table saw per request (scans = seq + index)."""
    tables: dict[str, dict[str, float]] = {}
    for name, counts in after[1].items():
        old = before[1].get(name, (0, 0, 0, 0))
        delta = [a - b for a, b in zip(counts, old, strict=True)]
        if any(delta):
            tables[name] = {
                k: round(v / requests, 2)
                for k, v in zip(("scans", "inserted", "updated", "deleted"), delta, strict=True)
                if v
            }
    transactions = after[0] - before[0]
    return {
        "requests": requests,
        "transactions": transactions,
        "per_request": transactions / requests if requests else None,
        "tables_per_request": tables,
    }


@dataclass
class Stack:
    procs: Processes
    app_env: dict[str, str]
    client: str
    base_url: str = ""
    fake_url: str = ""
    token: str = ""
    gunicorn: subprocess.Popen[Any] | None = None
    fake: subprocess.Popen[Any] | None = None
    djctl: subprocess.Popen[Any] | None = None
    meter: CpuMeter | None = None
    pg: PgStats | None = None
    idle: list[CpuWindow] = field(default_factory=list)
    raw: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    # -- the app's own services, through bench/djctl.py --------------------------------------

    def ctl(self, command: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        proc = self.djctl
        assert proc is not None and proc.stdin is not None
        proc.stdin.write(json.dumps(command) + "\n")
        proc.stdin.flush()
        answer = read_json_line(proc, timeout)
        if not answer.get("ok"):
            raise RuntimeError(f"djctl {command.get('op')}: {answer.get('error')}")
        return answer

    def config(self, **changes: Any) -> None:
        self.ctl({"op": "config", "changes": changes})

    def logs(self, ref_prefix: str) -> dict[str, Any]:
        answer = self.ctl({"op": "logs", "contains": f"(ref {ref_prefix}"})
        return {k: answer[k] for k in ("count", "upstream_calls", "by_status", "by_source")}

    # -- the fake upstream's control endpoints -------------------------------------------------

    def fake_reset(self) -> None:
        http_json(f"{self.fake_url}/_fake/reset", method="POST", body={})

    def fake_calls(self) -> list[dict[str, Any]]:
        return list(http_json(f"{self.fake_url}/_fake/calls", timeout=120)["calls"])

    def fake_count(self) -> int:
        return int(http_json(f"{self.fake_url}/_fake/calls?count_only=1")["count"])

    # -- idle CPU -------------------------------------------------------------------------------

    def idle_wait(self, seconds: float) -> None:
        """Sleep with nothing in flight, measuring what the stack burns while idle."""
        assert self.meter is not None
        with self.meter.window() as window:
            time.sleep(seconds)
        self.idle.append(window)

    def idle_rates(self) -> dict[str, float]:
        """CPU seconds per second each group used while nothing was in flight."""
        wall = sum(w.wall_s for w in self.idle)
        if not wall:
            return {}
        return {
            "server": sum(w.app_s for w in self.idle) / wall,
            "fake_upstream": sum(w.fake_s for w in self.idle) / wall,
            "postgres": sum(w.postgres_s for w in self.idle) / wall,
            "redis": sum(w.redis_s for w in self.idle) / wall,
            "machine": sum(w.machine_busy_s for w in self.idle) / wall,
        }

    def settled_db_counters(self) -> tuple[int, dict[str, tuple[int, int, int, int]]]:
        """PostgreSQL's counters once every backend has flushed what it counted so far."""
        assert self.pg is not None
        self.idle_wait(PG_STATS_SETTLE_S)
        return self.pg.snapshot()


def read_json_line(proc: subprocess.Popen[Any], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise RuntimeError("djctl did not answer in time; see bench/results/djctl.log")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"djctl exited ({proc.poll()}); see bench/results/djctl.log")
    return dict(json.loads(line))


def manage(args: Sequence[str], env: dict[str, str], log_name: str) -> subprocess.Popen[Any]:
    with open(RESULTS_DIR / log_name, "wb") as handle:
        return subprocess.Popen(
            [str(PYTHON), "manage.py", *args], cwd=ROOT, env=env, stdout=handle, stderr=handle
        )


def prepare(env: dict[str, str]) -> None:
    log(f"database {DB_NAME}: drop if exists, create, migrate; collectstatic; flush Redis db 2")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    redis.Redis.from_url(REDIS_URL).flushdb()
    jobs = {
        "migrate": manage(["migrate", "--noinput"], env, "migrate.log"),
        "collectstatic": manage(["collectstatic", "--noinput", "-v0"], env, "collectstatic.log"),
    }
    for name, proc in jobs.items():
        try:
            code = proc.wait(300)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise RuntimeError(f"{name} took over 300 s") from None
        if code != 0:
            raise RuntimeError(f"{name} failed ({code}); see bench/results/{name}.log")


def start_stack(
    procs: Processes,
    *,
    db_pool: bool,
    client: str,
    workers: int | None = None,
    app_settings: dict[str, str] | None = None,
) -> Stack:
    env = base_env()
    fake_port, app_port = free_port(), free_port()
    fake_url = f"http://{HOST}:{fake_port}"
    app_env = {
        **env,
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": f"{fake_url}/v1",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_ALLOWED_HOSTS": HOST,
        # Plain HTTP on loopback: no redirect to https, cookies not marked secure (the
        # Content Security Policy and HSTS stay as in production).
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        # Throttling stays on (every submit is counted in Redis, as in production), with a
        # per-user rate the bench's one user never reaches at c=500.
        "THROTTLE_SUBMIT_RATE": "1000000/min",
        "GUNICORN_BIND": f"{HOST}:{app_port}",
    }
    app_env["DATABASE_POOL"] = "1" if db_pool else "0"
    if workers:
        app_env["GUNICORN_WORKERS"] = str(workers)
    app_env.update(app_settings or {})
    stack = Stack(procs=procs, app_env=app_env, client=client, fake_url=fake_url)
    stack.base_url = f"http://{HOST}:{app_port}"
    prepare(app_env)

    log(f"fake upstream {fake_url}: first token {UPSTREAM_TTFT_S} s, {UPSTREAM_LATENCY_S} s a call")
    stack.fake = procs.start(
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
        ],
        env=env,
        log_path=RESULTS_DIR / "fake_upstream.log",
    )
    log(f"gunicorn {stack.base_url}: gunicorn.conf.py via bench/gunicorn_bench.py (no access log)")
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
    stack.pg = PgStats()
    wait_until(
        lambda: http_json(f"{fake_url}/_fake/behaviour")["latency_s"] == UPSTREAM_LATENCY_S,
        timeout=30,
        what="the fake upstream",
    )
    if read_json_line(stack.djctl, 120).get("ready") is not True:
        raise RuntimeError("djctl did not start")
    stack.token = stack.ctl({"op": "token"})["token"]

    gunicorn = stack.gunicorn
    workers = workers or os.cpu_count() or 1

    def healthy() -> bool:
        if gunicorn.poll() is not None:
            raise RuntimeError("gunicorn exited; see bench/results/gunicorn.log")
        health = http_json(f"{stack.base_url}/api/v1/health/", timeout=5)
        # Every worker must be up (and have trained its local router) before anything is timed.
        return bool(health["status"] == "ok" and len(children_of(gunicorn.pid)) >= workers)

    wait_until(healthy, timeout=180, what="gunicorn: /api/v1/health/ and every worker")
    stack.meter = CpuMeter(gunicorn.pid, stack.fake.pid)
    stack.settings = {
        "workers": workers,
        "worker_class": "asgi",
        "app_settings": app_settings or {},
        "database": "psycopg pool (DATABASE_POOL=1)"
        if db_pool
        else "persistent DB connections (DATABASE_POOL=0, CONN_MAX_AGE=600)",
        "client": client,
        "upstream": {
            "ttft_s": UPSTREAM_TTFT_S,
            "latency_s": UPSTREAM_LATENCY_S,
            "tick_s": UPSTREAM_TICK_S,
        },
    }
    return stack


# --- Load ------------------------------------------------------------------------------------


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
    measure: bool = False,
    ramp_s: float = 0.0,
) -> Run:
    """Send ``items`` with ``concurrency`` in flight (from 2 client processes at 200 and more)."""
    procs_n = max(1, min(2 if concurrency >= 200 else 1, concurrency))
    shares = [items[i::procs_n] for i in range(procs_n)]
    conc = [concurrency // procs_n + (i < concurrency % procs_n) for i in range(procs_n)]
    rounds = -(-len(items) // max(concurrency, 1))
    deadline_s = min(600.0, 60 + rounds * (2 * UPSTREAM_LATENCY_S + 5))
    TMP_DIR.mkdir(parents=True, exist_ok=True)
    launched: list[tuple[subprocess.Popen[Any], Path]] = []
    assert stack.meter is not None
    window = stack.meter.window() if measure else contextlib.nullcontext(CpuWindow())
    with window as cpu:
        for n, (share, c) in enumerate(zip(shares, conc, strict=True)):
            spec = {
                "base_url": stack.base_url,
                "token": stack.token,
                "client": stack.client,
                "mode": mode,
                "concurrency": c,
                "requests": share,
                "timeout_s": REQUEST_TIMEOUT_S,
                "deadline_s": deadline_s,
                "ramp_s": ramp_s,
            }
            spec_path, out_path = TMP_DIR / f"{label}-{n}.spec.json", TMP_DIR / f"{label}-{n}.json"
            spec_path.write_text(json.dumps(spec))
            out_path.unlink(missing_ok=True)
            proc = stack.procs.start(
                f"loadgen {label}",
                [PYTHON, BENCH_DIR / "loadgen.py", spec_path, out_path],
                env=base_env(),
                log_path=TMP_DIR / f"{label}-{n}.log",
            )
            launched.append((proc, out_path))
        reports = []
        for proc, out_path in launched:
            try:
                code = proc.wait(deadline_s + REQUEST_TIMEOUT_S + 30)
            except subprocess.TimeoutExpired:
                stack.procs.stop(proc)
                raise RuntimeError(f"loadgen {label} overran its deadline") from None
            if code != 0:
                raise RuntimeError(f"loadgen {label} failed ({code}): see {TMP_DIR}/{label}-*.log")
            reports.append(json.loads(out_path.read_text()))
            out_path.unlink()
    results = sorted((r for rp in reports for r in rp["results"]), key=lambda r: r["t_send"])
    stack.raw[label] = results
    return Run(
        label=label,
        mode=mode,
        concurrency=concurrency,
        results=results,
        not_sent=sum(rp["not_sent"] for rp in reports),
        wall_s=max(rp["wall_s"] for rp in reports),
        client=reports[0]["client"],
        client_cpu_s=sum(rp["cpu_user_s"] + rp["cpu_sys_s"] for rp in reports),
        client_process_cpu_s=sum(rp["process_cpu_s"] for rp in reports),
        client_procs=procs_n,
        loop_lag_p99_ms=max((rp["loop_lag_ms"]["p99"] or 0.0) for rp in reports),
        loop_lag_max_ms=max((rp["loop_lag_ms"]["max"] or 0.0) for rp in reports),
        cpu=cpu,
    )


def measured(
    stack: Stack,
    label: str,
    items: list[dict[str, Any]],
    *,
    mode: str,
    c: int,
    arrival: str = BURST,
) -> dict[str, Any]:
    """A measured run: fake call log cleared first, then matched; RequestLog rows counted."""
    stack.fake_reset()
    run = run_load(
        stack, label, items, mode=mode, concurrency=c, measure=True, ramp_s=ramp_of(arrival)
    )
    assert stack.pg is not None
    # The app keeps a connection per thread (CONN_MAX_AGE), so this is also the peak.
    connections = stack.pg.connections()
    summary = summarise(run, stack.fake_calls(), stack.logs(f"{label}-"), idle=stack.idle_rates())
    summary["postgres_connections_after"] = connections
    summary["arrival"] = arrival
    return summary


def ramp_of(arrival: str) -> float:
    """Steady: client n starts n/c of one request's duration late, as a load tester's spawn
    rate would, so requests arrive evenly spaced and stay so. Burst: all start at once, and
    since every request takes the same time, they keep arriving in waves of c."""
    return UPSTREAM_LATENCY_S if arrival == STEADY else 0.0


# --- Scenarios ---------------------------------------------------------------------------------


def scenario_old_vs_new(stack: Stack, profile: Profile) -> dict[str, Any]:
    c, n = profile.ab_concurrency, profile.ab_requests
    log(f"1. old design: routing_strategy=llm, JSON endpoint; {n} requests, {c} concurrent")
    stack.config(routing_strategy="llm")
    run_load(stack, "oldw", make_requests("oldw", c), mode="json", concurrency=c)
    old = measured(stack, "old", make_requests("old", n), mode="json", c=c)
    log(f"1. new default: routing_strategy=hybrid, SSE; {n} requests, {c} concurrent")
    stack.config(routing_strategy="hybrid")
    run_load(stack, "neww", make_requests("neww", c), mode="sse", concurrency=c)
    new = measured(stack, "new", make_requests("new", n), mode="sse", c=c)

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    ratios = {
        "total_p50": ratio(new["total_ms"]["p50"], old["total_ms"]["p50"]),
        "total_p95": ratio(new["total_ms"]["p95"], old["total_ms"]["p95"]),
        "first_text_p50": ratio(new["first_text_ms"]["p50"], old["total_ms"]["p50"]),
        "first_text_p95": ratio(new["first_text_ms"]["p95"], old["total_ms"]["p95"]),
    }
    return {
        "old": old,
        "new": new,
        "ratios": ratios,
        "pass": {
            "total_ratio": rep.le(ratios["total_p50"], rep.TARGET_TOTAL_RATIO),
            "first_text_ratio": rep.le(ratios["first_text_p50"], rep.TARGET_FIRST_TEXT_RATIO),
        },
    }


def scenario_overhead(stack: Stack, profile: Profile) -> list[dict[str, Any]]:
    levels: list[dict[str, Any]] = []
    tags: set[str] = set()
    for c, count, arrival in profile.levels:
        warm = max(profile.warm_min, c)
        tag = f"c{c}" + ("b" if arrival == BURST and c > 1 else "")
        # A level given twice (--levels) is a second round: its rows need a prefix of their own.
        tag = (
            next(f"{tag}r{n}" for n in range(1, 100) if f"{tag}r{n}" not in tags)
            if tag in tags
            else tag
        )
        tags.add(tag)
        log(
            f"2. overhead at {c} concurrent, {arrival} arrivals: {warm} warm-up requests, then "
            f"{count} measured (SSE)"
        )
        run_load(
            stack,
            f"{tag}w",
            make_requests(f"{tag}w", warm),
            mode="sse",
            concurrency=c,
            ramp_s=ramp_of(arrival),
        )
        summary = measured(stack, tag, make_requests(tag, count), mode="sse", c=c, arrival=arrival)
        levels.append(summary)
        log(
            f"   errors {summary['errors']}, overhead p50/p99 {rep.fmt(summary['overhead_ms']['p50'])}"
            f"/{rep.fmt(summary['overhead_ms']['p99'])} ms, server CPU "
            f"{rep.fmt(summary['cpu_ms_per_request']['server'])} ms/request"
        )
    return levels


def scenario_queries(stack: Stack, profile: Profile) -> dict[str, Any]:
    k, c = profile.query_requests, profile.query_concurrency
    legs: list[tuple[str, str, Sequence[str]]] = [("auto", "auto", TEXTS)]
    if profile.query_chosen_route:
        legs.append(("route chosen (tech)", "tech", TECH))
    log(
        f"4. statements per request: {k} SSE requests per leg, {c} concurrent; "
        f"{PG_STATS_SETTLE_S:.0f} s around each leg for PostgreSQL's statistics to land"
    )
    # Every thread that will serve the legs already has its database connection.
    run_load(stack, "qw", make_requests("qw", 3 * c), mode="sse", concurrency=c)
    out: dict[str, Any] = {}
    before = stack.settled_db_counters()
    for n, (name, route, pool) in enumerate(legs):
        tag = f"q{n}"
        items = make_requests(tag, k, route=route, pool=pool)
        run = run_load(stack, tag, items, mode="sse", concurrency=c)
        after = stack.settled_db_counters()
        out[name] = {
            **statements_delta(before, after, len(run.results)),
            "errors": sum(1 for r in run.results if is_error(r)),
            "routing_sources": dict(Counter(str(r.get("source")) for r in run.results)),
            "tag": tag,
        }
        before = after
    for q in out.values():
        q["request_logs"] = stack.logs(f"{q.pop('tag')}-")
        q["pass"] = q["errors"] == 0 and rep.le(
            q["per_request"], rep.TARGET_QUERIES + rep.QUERIES_SLACK
        )
    return out


def scenario_cache(stack: Stack, profile: Profile) -> dict[str, Any]:
    n = profile.cache_repeats
    text = f"{TEXTS[1]} (ref cache-hit)"
    log(
        f"3. response cache on: one request, then the same text {n}x JSON and {n}x SSE, one at a time"
    )
    stack.config(response_cache_enabled=True)
    queries: dict[str, Any] = {}
    try:
        prime = run_load(
            stack, "cache-prime", [{"text": text, "ref": "cache-hit"}], mode="json", concurrency=1
        )
        calls_before = stack.fake_count()
        items = [{"text": text, "ref": "cache-hit"} for _ in range(n)]
        if profile.query_cache_hits:
            before = stack.settled_db_counters()
        json_run = run_load(stack, "cache-json", items, mode="json", concurrency=1)
        if profile.query_cache_hits:
            queries = statements_delta(before, stack.settled_db_counters(), len(json_run.results))
            queries["errors"] = sum(1 for r in json_run.results if is_error(r))
            queries["pass"] = queries["errors"] == 0 and rep.le(
                queries["per_request"], rep.TARGET_QUERIES + rep.QUERIES_SLACK
            )
        sse_run = run_load(stack, "cache-sse", items, mode="sse", concurrency=1)
        calls_after = stack.fake_count()
    finally:
        stack.config(response_cache_enabled=False)
    out: dict[str, Any] = {
        "prime_status": prime.results[0].get("status") if prime.results else None,
        "upstream_calls_during_repeats": calls_after - calls_before,
        "queries": queries,
    }
    out["no_upstream_calls"] = out["upstream_calls_during_repeats"] == 0
    for name, run in (("json", json_run), ("sse", sse_run)):
        s = summarise(run, None, None)
        statuses = dict(Counter(str(r.get("status")) for r in run.results))
        out[name] = {
            "requests": len(run.results),
            "statuses": statuses,
            "all_cached": statuses.get("cached", 0) == len(run.results) == n,
            "total_ms": s["total_ms"],
            "first_text_ms": s["first_text_ms"],
            "errors": s["errors"],
            "pass": s["errors"] == 0 and rep.le(s["total_ms"]["p50"], rep.TARGET_CACHE_P50_MS),
        }
    return out


# --- Main --------------------------------------------------------------------------------------


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
        version = conn.execute("SHOW server_version").fetchone()
        max_conn = conn.execute("SHOW max_connections").fetchone()
    info = redis.Redis.from_url(REDIS_URL).info("server")
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": version[0] if version else "?",
        "postgresql_max_connections": max_conn[0] if max_conn else "?",
        "redis": str(info.get("redis_version", "?")),
    }


def speed_probe_ns() -> float:
    """How fast this machine runs Python right now: ``sum(range(100))``, best of 5 rounds.

    A shared virtual machine's speed drifts with its neighbours' load (the same machine
    has measured 555 and 830 ns within an hour); every figure of a run scales with it.
    """
    rounds = timeit.repeat("sum(range(100))", number=100_000, repeat=5)
    return min(rounds) / 100_000 * 1e9


def machine_busy_now(seconds: float = 2.0) -> float:
    """Share of all CPUs busy over a short sample, before anything of the bench runs."""
    busy0, total0 = machine_ticks()
    time.sleep(seconds)
    busy1, total1 = machine_ticks()
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


def run_all(stack: Stack, profile: Profile, only: set[str], report: dict[str, Any]) -> None:
    log(
        f"warm-up: 20 SSE + 5 JSON requests; then {profile.idle_s:g} s idle to measure what "
        "the stack burns idle"
    )
    run_load(stack, "warmup", make_requests("warmup", 20), mode="sse", concurrency=10)
    run_load(stack, "warmupj", make_requests("warmupj", 5), mode="json", concurrency=5)
    stack.idle_wait(profile.idle_s)
    if "ab" in only:
        report["old_vs_new"] = scenario_old_vs_new(stack, profile)
    # The heaviest load last: whatever it breaks must not spoil the other figures.
    if "queries" in only:
        report["queries"] = scenario_queries(stack, profile)
    if "cache" in only:
        report["cache"] = scenario_cache(stack, profile)
        if report["cache"]["queries"]:
            report.setdefault("queries", {})["cache hit (JSON)"] = report["cache"]["queries"]
    if "overhead" in only:
        report["overhead"] = scenario_overhead(stack, profile)
        # Failed requests are cheap: the figure comes from the busiest level without errors.
        clean = [lv for lv in report["overhead"] if lv["errors"] == 0] or report["overhead"]
        top = max(clean, key=lambda lv: lv["concurrency"])
        report["server_cpu_per_streamed_request_ms"] = {
            "concurrency": top["concurrency"],
            "errors": top["errors"],
            **top["cpu_ms_per_request"],
            "server_net_of_idle": top["cpu_ms_per_request_net_of_idle"]["server"],
        }
    assert stack.gunicorn is not None
    report["gunicorn_alive_at_end"] = stack.gunicorn.poll() is None
    report["stack"]["idle_cpu_ms_per_s"] = {k: 1000 * v for k, v in stack.idle_rates().items()}


def _levels_arg(text: str) -> tuple[tuple[int, int, str], ...]:
    """``50:250:steady,500:1000:burst`` -> ((50, 250, "steady"), (500, 1000, "burst"))."""
    levels = []
    for part in text.split(","):
        try:
            c, n, arrival = part.strip().split(":")
            level = (int(c), int(n), arrival)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not CLIENTS:REQUESTS:ARRIVAL") from None
        if level[0] < 1 or level[1] < level[0] or arrival not in (STEADY, BURST):
            raise argparse.ArgumentTypeError(
                f"{part!r}: clients >= 1, requests >= clients, arrival steady or burst"
            )
        levels.append(level)
    return tuple(levels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ClubOS benchmark (see bench/README.md)")
    parser.add_argument("--quick", action="store_true", help="a small run (c=1/20/100), < 2 min")
    parser.add_argument(
        "--persistent-db",
        dest="db_pool",
        action="store_false",
        help="run the app with DATABASE_POOL=0 (persistent connections) instead of the pool",
    )
    parser.add_argument(
        "--client",
        choices=("auto", "aiohttp", "httpx2"),
        default="auto",
        help="load generator's HTTP client (auto: aiohttp if installed, else httpx2)",
    )
    parser.add_argument("--workers", type=int, help="GUNICORN_WORKERS (default: one per core)")
    parser.add_argument(
        "--app-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="run the app with this environment variable (repeatable), e.g. "
        "DATABASE_ASYNC_POOL_MAX=0",
    )
    parser.add_argument(
        "--only", default="ab,overhead,queries,cache", help="scenarios: ab,overhead,queries,cache"
    )
    parser.add_argument(
        "--levels",
        type=_levels_arg,
        metavar="C:N:ARRIVAL,...",
        help="the overhead scenario's levels instead of the profile's, e.g. 50:250:steady",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        metavar="S",
        help="wait up to S seconds for other processes to leave the CPUs idle (default 60)",
    )
    parser.add_argument("--render", type=Path, help="print the tables of a saved results file")
    args = parser.parse_args(argv)
    if args.render:
        print(rep.render(json.loads(args.render.read_text())))
        return 0
    profile = QUICK if args.quick else FULL
    if args.levels:
        profile = replace(profile, name=f"{profile.name}, levels", levels=args.levels)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    RESULTS_DIR.mkdir(exist_ok=True)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)

    procs = Processes(ROOT)
    report: dict[str, Any] = {"profile": profile.name, "machine": machine_info()}
    report["machine"]["speed_probe_ns"] = {"start": speed_probe_ns()}
    deadline = time.monotonic() + args.wait_quiet
    while (busy := machine_busy_now()) > QUIET_BUSY and time.monotonic() < deadline:
        log(f"the machine is {100 * busy:.0f}% busy (other processes): waiting for it to calm down")
    report["machine"]["busy_before_start"] = busy
    if busy > QUIET_BUSY:
        log(
            f"warning: the machine is {100 * report['machine']['busy_before_start']:.0f}% busy "
            "before the bench starts; other processes' load will show in the figures"
        )
    stack: Stack | None = None
    try:
        stack = start_stack(
            procs,
            db_pool=args.db_pool,
            client=client_library(args.client),
            workers=args.workers,
            app_settings=dict(item.split("=", 1) for item in args.app_env),
        )
        report["stack"] = stack.settings
        run_all(stack, profile, only, report)
    except KeyboardInterrupt:
        log("interrupted: stopping what the bench started")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the clean-up finish
        procs.stop_all()
        if stack is not None and stack.pg is not None:
            stack.pg.close()
        for leftover in TMP_DIR.glob("*.spec.json"):
            leftover.unlink(missing_ok=True)

    report["machine"]["speed_probe_ns"]["end"] = speed_probe_ns()
    report["verdicts"] = rep.verdicts_of(report)
    report["duration_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw_path = args.out.with_name(args.out.stem + "-requests.json")
    raw_path.write_text(json.dumps(stack.raw if stack else {}, default=str))
    args.out.write_text(json.dumps(report, indent=1, default=str))  # before rendering can fail
    text = rep.render(report)
    report["text"] = text
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(text)
    shown = args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out
    print(f"\nresults: {shown} (per request: {raw_path.name}); {report['duration_s']} s")
    return 0 if all(v is not False for v in report["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
