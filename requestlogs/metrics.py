"""A request's metrics and its log line's facts, recorded once, when its row is final.

The pipeline calls ``request_observe`` from the row's final write (``RequestRun._write``),
where every timing is already computed: one place, whatever the request's end (answered,
failed, abandoned, crashed). It costs a few microseconds (``bench/metrics_cost.py``): the
metrics' labelled children are looked up once per process and kept.
"""

from typing import Any

from prometheus_client import Counter, Histogram

from config.request_context import RequestContext
from requestlogs.models import RequestLog

# Routing is sub-millisecond (rules, the classifier) to seconds (the LLM router); the model's
# stages run from a few hundred ms to the 15 s deadline and beyond with LLM routing.
STAGE_BUCKETS_S = (
    *(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0),
)
STAGES = (
    ("routing", "routing_ms"),
    ("first_text", "ttft_ms"),
    ("assistant", "assistant_ms"),
    ("total", "total_ms"),
)

REQUEST_STAGE_SECONDS = Histogram(
    "clubos_request_stage_seconds",
    "Submits' stage latencies by route: routing (choosing the route), first_text (from "
    "arrival to the first answer text), assistant (the model's whole answer), total.",
    ["route", "stage"],
    buckets=STAGE_BUCKETS_S,
)
REQUESTS = Counter(
    "clubos_requests",
    "Submits by route, final status and routing source.",
    ["route", "status", "routing_source"],
)

_stages: dict[tuple[str, str], Histogram] = {}
_requests: dict[tuple[str, str, str], Counter] = {}


def request_observe(*, log: RequestLog, route: str, context: RequestContext | None) -> None:
    """The submit's metrics, and its outcome onto ``context`` for its log line. ``route``
    is the route's slug ("" when the request ended before it was routed)."""
    route = route or "none"
    source = log.routing_source or "none"
    key = (route, log.status, source)
    counter = _requests.get(key)
    if counter is None:
        counter = _requests[key] = REQUESTS.labels(*key)
    counter.inc()
    timings: dict[str, Any] = {}
    for stage, column in STAGES:
        ms = getattr(log, column)
        timings[stage] = ms
        if ms is None:
            continue
        histogram = _stages.get((route, stage))
        if histogram is None:
            histogram = _stages[(route, stage)] = REQUEST_STAGE_SECONDS.labels(route, stage)
        histogram.observe(ms / 1000)
    if context is not None:
        context.outcome = {
            "request_status": log.status,
            "route": None if route == "none" else route,
            "routing_source": log.routing_source or None,
            "cached": log.cached,
            "upstream_calls": log.upstream_calls,
            "timings_ms": timings,
        }
