"""gunicorn settings for ClubOS. Override any of them with GUNICORN_* environment variables."""

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clubos.settings")

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Requests spend almost all their time waiting on the upstream model. With the `asgi`
# worker that wait is a coroutine on the worker's event loop (uvloop), not a thread.
worker_class = "asgi"
wsgi_app = "clubos.asgi:application"
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count()))
# Concurrent connections per asgi worker (streams waiting on the model included).
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "2000"))
# A streamed answer may take the whole assistant deadline (15 s) plus routing.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
# The asgi worker never takes the client address from X-Forwarded-For (the app does, per
# TRUSTED_PROXY_COUNT); these peers may only set the scheme headers (X-Forwarded-Proto).
# Loopback by default: a proxy on another host must be listed here.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
preload_app = False

# Prometheus metrics from several workers (config/metrics.py): each worker writes its values
# to files in this directory and a scrape adds them up. Set before any worker (or this
# process) imports prometheus-client, which reads it then. A directory of our own unless one
# is given; either way emptied at start, since files of a previous run's workers would be
# added to this run's counts.
_METRICS_DIR_OURS = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _METRICS_DIR_OURS:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="clubos-metrics-")


def on_starting(server: object) -> None:
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def child_exit(server: object, worker: object) -> None:
    """A dead worker's gauges (its pools, breakers, CPU and memory) leave the scrape; its
    counters and histograms stay in the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    if _METRICS_DIR_OURS:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def when_ready(server: object) -> None:
    """Rows a killed worker left 'received' are marked 'abandoned' when the server starts (the
    task worker, `manage.py tasks_worker`, also does it every TASKS_SWEEP_INTERVAL_S); only rows
    older than the longest a request can take, so another instance's live streams are left."""
    import django

    django.setup()
    from requestlogs.services import request_logs_mark_abandoned

    try:
        request_logs_mark_abandoned()
    except Exception as exc:  # The server must start even if the database is still coming up.
        print(f"clubos: could not sweep abandoned requests: {exc}")
    # Workers fork from this process: a connection (or pool) opened here would be shared
    # by all of them, each reading the others' results.
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close()
        close_pool = getattr(connection, "close_pool", None)  # PostgreSQL only
        if close_pool is not None and getattr(connection, "pool", None) is not None:
            close_pool()
