"""Timing statistics of the request log: count, p50/p95 of each timing, error and cache-hit rates.

Percentiles follow PostgreSQL's ``percentile_cont`` (linear interpolation between the two
nearest ranks). On PostgreSQL the database computes them; on SQLite, which has no
ordered-set aggregates, the timing columns are fetched and the same definition is applied
in Python, so both backends give the same numbers for the same rows.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Q, QuerySet, Value

from requestlogs.models import RequestLog, RequestStatus
from routing.models import Route

# The timing columns, in the order the API reports them.
TIMING_FIELDS = ("routing_ms", "ttft_ms", "assistant_ms", "total_ms")
PERCENTILES = {"p50": 0.5, "p95": 0.95}
FAILED_STATUSES = (RequestStatus.TIMEOUT, RequestStatus.ERROR)
OVERALL_NAME = "All routes"


class PercentileCont(Aggregate):
    """``percentile_cont(fraction) WITHIN GROUP (ORDER BY column)`` (PostgreSQL).

    The fraction is a bound parameter and the column an ORM expression: nothing is
    formatted into the SQL text. NULLs are ignored, as by every SQL aggregate.
    """

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(expressions)s) WITHIN GROUP (%(order_by)s)%(filter)s"
    allow_order_by = True
    arity = 1

    def __init__(self, column: str, fraction: float, **extra: Any) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"a percentile fraction is between 0 and 1, not {fraction}")
        super().__init__(
            Value(float(fraction)), order_by=F(column), output_field=FloatField(), **extra
        )


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont`` in Python: None for no values, else linear interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = math.ceil(position)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _window(*, since: datetime, until: datetime) -> QuerySet[RequestLog]:
    # ``until`` is exclusive so consecutive windows never count a request twice.
    return RequestLog.objects.filter(created_at__gte=since, created_at__lt=until).order_by()


_COUNTS = {
    "count": Count("id"),
    "failed": Count("id", filter=Q(status__in=FAILED_STATUSES)),
    "cache_hits": Count("id", filter=Q(cached=True)),
}


def _percentile_aggregates() -> dict[str, PercentileCont]:
    return {
        f"{column}_{label}": PercentileCont(column, fraction)
        for column in TIMING_FIELDS
        for label, fraction in PERCENTILES.items()
    }


def _timings_from_columns(columns: dict[str, list[float]]) -> dict[str, float | None]:
    return {
        f"{column}_{label}": percentile_cont(columns.get(column, []), fraction)
        for column in TIMING_FIELDS
        for label, fraction in PERCENTILES.items()
    }


def _python_percentiles(
    qs: QuerySet[RequestLog],
) -> tuple[dict[int, dict[str, float | None]], dict[str, float | None]]:
    """Per route and overall percentiles from the fetched timing columns (the SQLite path)."""
    per_route: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    overall: dict[str, list[float]] = defaultdict(list)
    for route_id, *timings in qs.values_list("route_id", *TIMING_FIELDS).iterator():
        for column, value in zip(TIMING_FIELDS, timings, strict=True):
            if value is None:
                continue  # each column ignores its own NULLs, like the SQL aggregate
            overall[column].append(value)
            if route_id is not None:
                per_route[route_id][column].append(value)
    return (
        {route_id: _timings_from_columns(columns) for route_id, columns in per_route.items()},
        _timings_from_columns(overall),
    )


def _row(route: Route | None, values: dict[str, Any]) -> dict[str, Any]:
    count = values["count"]
    row: dict[str, Any] = {
        "slug": route.slug if route is not None else None,
        "name": route.name if route is not None else OVERALL_NAME,
        "count": count,
    }
    for column in TIMING_FIELDS:
        row[column] = {label: _round(values.get(f"{column}_{label}")) for label in PERCENTILES}
    row["error_rate"] = _rate(values["failed"], count)
    row["cache_hit_rate"] = _rate(values["cache_hits"], count)
    return row


def _routes_in_order(route_ids: Iterable[int]) -> list[Route]:
    return list(Route.objects.filter(pk__in=list(route_ids)).order_by("priority", "slug"))


def timing_stats(*, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """One row per route with requests in ``[since, until)``, then an overall row (slug None).

    Each row: slug, name, count, ``{p50, p95}`` of routing_ms, ttft_ms, assistant_ms and
    total_ms (None when the column has no values), error_rate ((timeout + error) / count)
    and cache_hit_rate. The overall row also counts requests that never got a route.
    """
    qs = _window(since=since, until=until)
    use_database = connection.vendor == "postgresql"
    aggregates: dict[str, Any] = dict(_COUNTS)
    if use_database:
        aggregates |= _percentile_aggregates()

    per_route: dict[int, dict[str, Any]] = {
        values["route_id"]: dict(values)
        for values in qs.filter(route__isnull=False).values("route_id").annotate(**aggregates)
    }
    overall = qs.aggregate(**aggregates)
    if not use_database:
        route_timings, overall_timings = _python_percentiles(qs)
        for route_id, values in per_route.items():
            values |= route_timings.get(route_id, {})
        overall |= overall_timings

    rows = [_row(route, per_route[route.pk]) for route in _routes_in_order(per_route)]
    rows.append(_row(None, overall))
    return rows
