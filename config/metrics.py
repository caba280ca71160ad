"""Prometheus metrics: how they are collected and served, and the process's own state.

Two modes, chosen by prometheus-client itself from ``PROMETHEUS_MULTIPROC_DIR`` when it is
imported:

* **In-process** (``make run``, the tests): every metric lives in this process's default
  registry, beside prometheus-client's own process collector (CPU, memory, open files).
* **Multiprocess** (gunicorn, ``gunicorn.conf.py`` sets the directory up): each worker writes
  its values to memory-mapped files of its own in that directory, and whichever worker
  answers a scrape adds them all up (``MultiProcessCollector``). Counters and histograms
  are summed over every worker that ever ran; gauges are per live worker.

Per-request metrics are observed where a request's row is final (``requestlogs.metrics``).
The state of things that are not requests (connection pools, circuit breakers, the process)
is read into gauges by ``metrics_state_read``, never per request: at each scrape for the
answering worker, and every ``METRICS_REFRESH_S`` in every worker under gunicorn, since a
scrape can only read another worker's files.
"""

import threading
from collections.abc import Callable

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from config.db_async import db_async_pools


def metrics_multiprocess() -> bool:
    return bool(settings.PROMETHEUS_MULTIPROC_DIR)


# --- Connection pools -------------------------------------------------------------------

# Summed over live workers: the whole server's connections in use and requests waiting.
DB_POOL_IN_USE = Gauge(
    "clubos_db_pool_connections_in_use",
    "Database connections lent out by the pool now.",
    ["pool"],
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "clubos_db_pool_requests_waiting",
    "Requests waiting for a pooled database connection now.",
    ["pool"],
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "clubos_db_pool_connections",
    "Database connections the pool holds now (in use or idle).",
    ["pool"],
    multiprocess_mode="livesum",
)


def _pool_read(name: str, stats: dict[str, int]) -> None:
    size = stats.get("pool_size", 0)
    DB_POOL_SIZE.labels(name).set(size)
    DB_POOL_IN_USE.labels(name).set(size - stats.get("pool_available", 0))
    DB_POOL_WAITING.labels(name).set(stats.get("requests_waiting", 0))


def db_pools_read() -> None:
    """The ORM's pool (``orm``, one per process, Django's psycopg pool) and the event loop's
    (``event_loop``, ``config.db_async``), when they exist: nothing on SQLite."""
    from django.db import DEFAULT_DB_ALIAS, connections

    connection = connections[DEFAULT_DB_ALIAS]
    # Django's pools by alias, shared by the process's threads; reading ``connection.pool``
    # would create one.
    orm_pool = getattr(connection, "_connection_pools", {}).get(DEFAULT_DB_ALIAS)
    if orm_pool is not None:
        _pool_read("orm", orm_pool.get_stats())
    loop_stats = [pool.get_stats() for pool in db_async_pools()]
    if loop_stats:
        _pool_read(
            "event_loop",
            {key: sum(s.get(key, 0) for s in loop_stats) for key in loop_stats[0]},
        )


# --- The process: CPU and memory ----------------------------------------------------------

_process = ProcessCollector(registry=None)
# Multiprocess only: the in-process registry has prometheus-client's own process collector,
# which reads the same values under the same names. Per live worker (a ``pid`` label).
_PROCESS_GAUGES: dict[str, Gauge] = {}


def process_read() -> None:
    if not metrics_multiprocess():
        return
    for family in _process.collect():
        name = PROCESS_METRICS.get(family.name)
        if name is None:
            continue
        gauge = _PROCESS_GAUGES.get(name)
        if gauge is None:
            gauge = _PROCESS_GAUGES[name] = Gauge(
                name, family.documentation, registry=None, multiprocess_mode="liveall"
            )
        for sample in family.samples:
            gauge.set(sample.value)


PROCESS_METRICS = {
    # A counter's family is named without its _total.
    "process_cpu_seconds": "process_cpu_seconds_total",
    "process_resident_memory_bytes": "process_resident_memory_bytes",
    "process_open_fds": "process_open_fds",
    "process_start_time_seconds": "process_start_time_seconds",
}


# --- Reading the state, serving the scrape ------------------------------------------------

# What reads state into gauges, by name: the pools and the process here; the other apps add
# their own in their AppConfig.ready (the circuit breakers: ``assistants.metrics``).
STATE_READERS: dict[str, Callable[[], None]] = {"db_pools": db_pools_read, "process": process_read}
_reading = threading.Lock()


def metrics_state_read() -> None:
    """Every reader's state into its gauges (microseconds; never on a request's path)."""
    with _reading:
        for read in STATE_READERS.values():
            read()


def metrics_exposition() -> tuple[bytes, str]:
    """The scrape's body and content type: this process's state read now, then every
    metric (in multiprocess mode, every worker's, added up)."""
    metrics_state_read()
    if metrics_multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
