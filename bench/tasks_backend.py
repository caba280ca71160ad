"""Which durable backend for Django 6's tasks framework: django-tasks-db or RQ (django-tasks-rq).

    .venv/bin/python bench/tasks_backend.py [--backend db|rq|both] [--n 200]

For each backend, with the project's own settings (DATABASE_URL: PostgreSQL) and a Django 6
``django.tasks`` task (``@task``, not the ``django_tasks`` backport's):

1. enqueue cost on the request path, from an event loop (``aenqueue``), p50/p99 ms, and the
   statements (SQL or Redis commands) one enqueue sends;
2. enqueue-to-run latency with one worker waiting;
3. durability: a worker SIGKILLed in the middle of a task, a new worker started: is the
   task run again within 60 s?
4. the store down (RQ: its Redis stopped; db: the database's address closed): what enqueue
   does and how long it takes to fail.

RQ gets a redis-server of its own on a free port (started and stopped here), so that its
command count is exact and its outage touches nothing else. The worker runs as a child
process of this script (``_worker``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/helper4")
RESULTS = Path(os.environ.setdefault("TASKS_BENCH_RESULTS", tempfile.mktemp(suffix=".tasks")))


def configure(backend: str, redis_port: int | None) -> None:
    """clubos.settings with one task backend; nothing of the project's own tasks setup."""
    import django
    from django.conf import settings

    import clubos.settings as base

    conf: dict[str, Any] = {k: getattr(base, k) for k in dir(base) if k.isupper()}
    apps = [a for a in conf["INSTALLED_APPS"] if a not in ("django_tasks_db", "django_rq")]
    if backend == "db":
        conf["INSTALLED_APPS"] = [*apps, "django_tasks_db"]
        conf["TASKS"] = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    else:
        conf["INSTALLED_APPS"] = [*apps, "django_rq"]
        conf["TASKS"] = {"default": {"BACKEND": "django_tasks_rq.RQBackend"}}
        conf["RQ_QUEUES"] = {
            "default": {
                "URL": f"redis://127.0.0.1:{redis_port}/0",
                "SOCKET_CONNECT_TIMEOUT": 0.25,
                "SOCKET_TIMEOUT": 0.25,
            }
        }
    settings.configure(**conf)
    django.setup()


def _task() -> Any:
    from django.tasks import task

    return task()(bench_task)


def bench_task(sent: float, sleep_s: float = 0.0, tag: str = "run") -> None:
    with RESULTS.open("a") as out:
        out.write(f"{tag} start {time.time() - sent:.6f}\n")
    if sleep_s:
        time.sleep(sleep_s)
        with RESULTS.open("a") as out:
            out.write(f"{tag} end\n")


def results(tag: str, what: str = "start") -> list[float]:
    if not RESULTS.exists():
        return []
    rows = [line.split() for line in RESULTS.read_text().splitlines()]
    return [float(r[2]) if len(r) > 2 else 0.0 for r in rows if r[0] == tag and r[1] == what]


# --- The worker (a child process) ---------------------------------------------------------


def worker(backend: str, redis_port: int | None) -> None:
    configure(backend, redis_port)
    globals()["bench_task"] = _task()  # the path the queue names: __main__.bench_task
    if backend == "db":
        from django_tasks_db.management.commands.db_worker import Worker

        interval = float(os.environ.get("TASKS_BENCH_INTERVAL", "0.1"))
        Worker(
            queue_names=["default"],
            interval=interval,
            batch=False,
            backend_name="default",
            startup_delay=False,
            max_tasks=None,
            worker_id=f"bench-{os.getpid()}",
            excluded_queue_names=[],
        ).run()
    else:
        import django_rq
        from django_tasks_rq.backend import Job
        from rq import SimpleWorker
        from rq import Worker as RQWorker

        queue = django_rq.get_queue("default", job_class=Job)
        # rq's Worker forks a work horse per job; SimpleWorker runs jobs in its own process.
        kind = SimpleWorker if os.environ.get("TASKS_BENCH_RQ_SIMPLE") else RQWorker
        kind([queue], connection=queue.connection, job_class=Job).work(with_scheduler=True)


# --- The measurements -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_worker(backend: str, redis_port: int | None, **env: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, __file__, "_worker", backend, str(redis_port or 0)]
    return subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    kids = [int(p) for p in out.split()]
    return kids + [d for k in kids for d in _descendants(k)]


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        # rq's work horse runs in a session of its own: a SIGKILLed worker takes it along
        # only if it is killed too (as when the machine or the container dies).
        for pid in _descendants(proc.pid) if sig == signal.SIGKILL else []:
            os.kill(pid, sig)
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(cond: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def statements(backend: str, fn: Any) -> int:
    """What one call of ``fn`` sends its store: SQL statements, or Redis commands."""
    if backend == "db":
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            fn()
        return len(ctx.captured_queries)
    import django_rq

    conn = django_rq.get_connection("default")

    def processed() -> int:
        return int(conn.info("stats")["total_commands_processed"])

    before = processed()
    fn()
    return processed() - before - 1  # the INFO itself


def enqueue_cost(backend: str, task: Any, n: int) -> dict[str, Any]:
    from django.db import close_old_connections

    async def run() -> tuple[list[float], list[float]]:
        loop_lag: list[float] = []
        costs: list[float] = []
        stop_probe = asyncio.Event()

        async def probe() -> None:
            # How long the loop is kept from a 1 ms timer while the enqueues run.
            while not stop_probe.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                loop_lag.append((time.perf_counter() - t - 0.001) * 1000)

        prober = asyncio.create_task(probe())
        for _ in range(n):
            t = time.perf_counter()
            await task.aenqueue(time.time(), tag="cost")
            costs.append((time.perf_counter() - t) * 1000)
        stop_probe.set()
        await prober
        return costs, loop_lag

    costs, lag = asyncio.run(run())
    sync_costs = []
    for _ in range(n):
        t = time.perf_counter()
        task.enqueue(time.time(), tag="cost")
        sync_costs.append((time.perf_counter() - t) * 1000)
    close_old_connections()
    return {
        "aenqueue_p50_ms": round(statistics.median(costs), 3),
        "aenqueue_p99_ms": round(pct(costs, 0.99), 3),
        "enqueue_in_thread_p50_ms": round(statistics.median(sync_costs), 3),
        "loop_lag_p99_ms": round(pct(lag, 0.99), 3) if lag else None,
        "statements": statements(backend, lambda: task.enqueue(time.time(), tag="cost")),
    }


def clear(backend: str) -> None:
    if backend == "db":
        from django_tasks_db.models import DBTaskResult

        DBTaskResult.objects.all().delete()
    else:
        import django_rq

        django_rq.get_connection("default").flushdb()
    RESULTS.unlink(missing_ok=True)


def latency(backend: str, task: Any, port: int | None, n: int, **env: str) -> dict[str, Any]:
    clear(backend)
    proc = start_worker(backend, port, **env)
    try:
        task.enqueue(time.time(), tag="warm")
        wait_for(lambda: results("warm"), 20)
        for _ in range(n):
            task.enqueue(time.time(), tag="lat")
            time.sleep(0.02)
        wait_for(lambda: len(results("lat")) >= n, 30)
    finally:
        stop(proc)
    lat = [v * 1000 for v in results("lat")]
    return {
        "runs": len(lat),
        "p50_ms": round(statistics.median(lat), 1) if lat else None,
        "p99_ms": round(pct(lat, 0.99), 1) if lat else None,
    }


def durability(backend: str, task: Any, port: int | None) -> dict[str, Any]:
    clear(backend)
    first = start_worker(backend, port)
    task.enqueue(time.time(), sleep_s=3.0, tag="kill")
    started = wait_for(lambda: results("kill"), 20)
    time.sleep(0.3)
    stop(first, signal.SIGKILL)
    second = start_worker(backend, port)
    try:
        rerun = wait_for(lambda: len(results("kill", "end")) >= 1, 60)
        state = task_states(backend)
    finally:
        stop(second)
    return {"started": started, "run_again_within_60s": rerun, "task_state_after": state}


def task_states(backend: str) -> dict[str, int]:
    if backend == "db":
        from django.db.models import Count
        from django_tasks_db.models import DBTaskResult

        return dict(DBTaskResult.objects.values_list("status").annotate(n=Count("id")))
    import django_rq
    from rq.registry import FailedJobRegistry, StartedJobRegistry

    q = django_rq.get_queue("default")
    return {
        "queued": q.count,
        "started": StartedJobRegistry(queue=q).count,
        "failed": FailedJobRegistry(queue=q).count,
    }


def outage(backend: str, task: Any, redis: subprocess.Popen[bytes] | None) -> dict[str, Any]:
    from django.db import connections

    if backend == "rq":
        assert redis is not None
        redis.send_signal(signal.SIGSTOP)  # a hung Redis: the slow kind of outage
        t = time.perf_counter()
        try:
            task.enqueue(time.time(), tag="down")
            hung = "enqueued"
        except Exception as exc:
            hung = type(exc).__name__
        hung_ms = (time.perf_counter() - t) * 1000
        redis.send_signal(signal.SIGCONT)
        redis.terminate()
        redis.wait()
        t = time.perf_counter()
        try:
            task.enqueue(time.time(), tag="down")
            stopped = "enqueued"
        except Exception as exc:
            stopped = type(exc).__name__
        return {
            "hung_store": f"{hung} after {hung_ms:.0f} ms",
            "stopped_store": f"{stopped} after {(time.perf_counter() - t) * 1000:.0f} ms",
        }
    # The database's address closed: what a submit meets when PostgreSQL is gone.
    conn = connections["default"]
    conn.close()
    if getattr(conn, "pool", None) is not None:
        conn.close_pool()
    conn.settings_dict["PORT"] = _free_port()
    t = time.perf_counter()
    try:
        task.enqueue(time.time(), tag="down")
        outcome = "enqueued"
    except Exception as exc:
        outcome = type(exc).__name__
    return {"stopped_store": f"{outcome} after {(time.perf_counter() - t) * 1000:.0f} ms"}


def measure(backend: str, n: int) -> dict[str, Any]:
    redis = None
    port = None
    if backend == "rq":
        port = _free_port()
        redis = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.3)
    configure(backend, port)
    if backend == "db":
        from django.core.management import call_command

        call_command("migrate", "django_tasks_database", verbosity=0)
    task = _task()
    globals()["bench_task"] = task
    try:
        clear(backend)
        out: dict[str, Any] = {"backend": backend}
        out["enqueue"] = enqueue_cost(backend, task, n)
        if backend == "db":
            out["latency_interval_0.1s"] = latency(backend, task, port, n // 4)
            out["latency_interval_1s"] = latency(
                backend, task, port, n // 4, TASKS_BENCH_INTERVAL="1"
            )
        else:
            out["latency_forking_worker"] = latency(backend, task, port, n // 4)
            out["latency_simple_worker"] = latency(
                backend, task, port, n // 4, TASKS_BENCH_RQ_SIMPLE="1"
            )
        out["worker_sigkilled_mid_task"] = durability(backend, task, port)
        clear(backend)
        out["store_down"] = outage(backend, task, redis)
        return out
    finally:
        if redis is not None and redis.poll() is None:
            redis.send_signal(signal.SIGCONT)
            redis.terminate()
            redis.wait()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker(sys.argv[2], int(sys.argv[3]) or None)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["db", "rq", "both"], default="both")
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    if args.backend == "both":
        # One backend per process: Django is configured once per process.
        for backend in ("db", "rq"):
            subprocess.run([sys.executable, __file__, "--backend", backend, "--n", str(args.n)])
        return
    print(json.dumps(measure(args.backend, args.n), indent=2), flush=True)


if __name__ == "__main__":
    main()
