"""The assistants' metrics: upstream failures as they happen, circuit breakers as they are.

``clubos_upstream_errors_total`` counts each failed call to a model (every attempt, retries
included) by backend and kind: ``rate_limited`` (429), ``server_error`` (5xx),
``disconnect`` (the connection failed or dropped), ``timeout``, ``upstream`` (a malformed or
cut-short stream), ``rejected`` (another 4xx), ``unavailable`` (the backend is not
configured). A call the open breaker refused never left: it is not an upstream error.
"""

from prometheus_client import Counter, Gauge

from assistants.breaker import breakers_all

UPSTREAM_ERRORS = Counter(
    "clubos_upstream_errors",
    "Failed calls to a model, by backend and kind.",
    ["backend", "kind"],
)
# Per live worker: each worker has its own breakers.
BREAKER_OPEN = Gauge(
    "clubos_circuit_breaker_open",
    "1 while the backend's circuit breaker is open (refusing calls, or letting one trial "
    "call through), else 0.",
    ["backend"],
    multiprocess_mode="liveall",
)
BREAKER_FAILURES = Gauge(
    "clubos_circuit_breaker_consecutive_failures",
    "Failed calls to the backend since its last success.",
    ["backend"],
    multiprocess_mode="liveall",
)

_errors: dict[tuple[str, str], Counter] = {}


def upstream_error_count(*, backend: str, kind: str) -> None:
    child = _errors.get((backend, kind))
    if child is None:
        child = _errors[(backend, kind)] = UPSTREAM_ERRORS.labels(backend, kind)
    child.inc()


def breakers_read() -> None:
    """Each breaker's state into the gauges (``config.metrics.STATE_READERS``)."""
    for backend, breaker in breakers_all().items():
        BREAKER_OPEN.labels(backend).set(1 if breaker.is_open else 0)
        BREAKER_FAILURES.labels(backend).set(breaker.failures)
