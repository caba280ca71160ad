"""Timing statistics of the request log: count, p50/p95 of each timing, rates, routing sources.

One path for every figure: the stats API (``timing_stats``), the admin's timing dashboard
and its CSV export (``timing_dashboard_get``) all read ``route_figures`` and
``volume_series`` below.

Percentiles follow PostgreSQL's ``percentile_cont`` (linear interpolation between the two
nearest ranks). On PostgreSQL the database computes them; on SQLite, which has no
ordered-set aggregates, the timing columns are fetched and the same definition is applied
in Python, so both backends give the same numbers for the same rows.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    Aggregate,
    Count,
    DateTimeField,
    F,
    FloatField,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Value,
)
from django.db.models.sql.compiler import SQLCompiler

from requestlogs.models import RequestLog, RequestStatus, RoutingSource
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


# Memory each percentile's sort may use (PostgreSQL), for one statistics query. The default
# 4 MB sends a 30-day sort of a busy log to disk; this keeps a million timings in memory.
SORT_MEMORY = "48MB"


@contextmanager
def _sorting_room() -> Iterator[None]:
    """A transaction in which PostgreSQL's sorts for the percentiles have SORT_MEMORY."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL work_mem = '{SORT_MEMORY}'")
        yield


def _window(*, since: datetime, until: datetime) -> QuerySet[RequestLog]:
    # ``until`` is exclusive so consecutive windows never count a request twice.
    return RequestLog.objects.filter(created_at__gte=since, created_at__lt=until).order_by()


# Counts of created_at (never NULL, so every row), not of id: the id is not in the covering
# index (reqlog_time_figures), and naming it makes PostgreSQL read every row of the period
# from the table instead of the index alone.
_COUNTS = {
    "count": Count("created_at"),
    "failed": Count("created_at", filter=Q(status__in=FAILED_STATUSES)),
    "timeouts": Count("created_at", filter=Q(status=RequestStatus.TIMEOUT)),
    "cache_hits": Count("created_at", filter=Q(cached=True)),
    "escalations": Count("created_at", filter=Q(escalated=True)),
    "rated": Count("created_at", filter=Q(feedback_helpful__isnull=False)),
    "not_helpful": Count("created_at", filter=Q(feedback_helpful=False)),
    **{
        f"source_{source}": Count("created_at", filter=Q(routing_source=source))
        for source in RoutingSource.values
    },
}
# The keys of a stats API row (``timing_stats``); a dashboard row has more.
API_KEYS = ("slug", "name", "count", *TIMING_FIELDS, "error_rate", "cache_hit_rate")


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
    row["timeout_rate"] = _rate(values["timeouts"], count)
    row["cache_hit_rate"] = _rate(values["cache_hits"], count)
    row["escalation_rate"] = _rate(values["escalations"], count)
    # Of the requests someone rated: unrated ones say nothing about helpfulness.
    row["rated"] = values["rated"]
    row["not_helpful_rate"] = _rate(values["not_helpful"], values["rated"])
    row["sources"] = {
        source: _rate(values[f"source_{source}"], count) for source in RoutingSource.values
    }
    return row


def _routes_in_order(route_ids: Iterable[int]) -> list[Route]:
    return list(Route.objects.filter(pk__in=list(route_ids)).order_by("priority", "slug"))


def route_figures(*, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """One row per route with requests in ``[since, until)``, then an overall row (slug None).

    Each row: slug, name, count, ``{p50, p95}`` of routing_ms, ttft_ms, assistant_ms and
    total_ms (None when the column has no values), error_rate ((timeout + error) / count),
    timeout_rate, cache_hit_rate, escalation_rate, rated (requests with feedback),
    not_helpful_rate (of the rated ones) and sources (each routing source's share of the
    count). The overall row also counts requests that never got a route.
    """
    with _sorting_room():
        return _route_figures(since=since, until=until)


def _route_figures(*, since: datetime, until: datetime) -> list[dict[str, Any]]:
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


def timing_stats(*, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The stats API's rows: ``route_figures`` with the keys the API has always had."""
    return [{key: row[key] for key in API_KEYS} for row in route_figures(since=since, until=until)]


# --- Over time ---------------------------------------------------------------------------


class BucketIndex(Func):
    """Which ``seconds``-long slot after ``origin`` a moment falls in: 0, 1, 2 ...

    Plain arithmetic on both backends (no date_bin, no strftime buckets), so a bucket can be
    any whole number of seconds: five minutes for the last hour, a day for the last 30 days.
    ``origin`` is on a whole second and every moment counted is at or after it.
    """

    output_field = IntegerField()

    def __init__(self, column: str, *, origin: datetime, seconds: int) -> None:
        if origin.microsecond:
            raise ValueError("a bucket origin is on a whole second")
        super().__init__(
            F(column), Value(origin, output_field=DateTimeField()), Value(int(seconds))
        )

    def _compiled(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[list[str], list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        for expression in self.get_source_expressions():
            sql, expression_params = compiler.compile(expression)
            parts.append(sql)
            params.extend(expression_params)
        return parts, params

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, list[Any]]:
        # SQLite keeps a datetime as text in UTC. Whole seconds since the epoch, in integers:
        # julianday's floating days put a moment on a bucket's edge in the bucket before. The
        # dropped fraction of a second never crosses an edge (origin and size are whole).
        (column, origin, seconds), params = self._compiled(compiler, connection)
        return (
            f"((CAST(strftime('%%s', {column}) AS INTEGER)"
            f" - CAST(strftime('%%s', {origin}) AS INTEGER)) / {seconds})",
            params,
        )

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, list[Any]]:
        # EXTRACT(EPOCH ...) is numeric (exact), so an edge falls in its own bucket.
        (column, origin, seconds), params = self._compiled(compiler, connection)
        return (
            f"FLOOR(EXTRACT(EPOCH FROM ({column} - {origin})) / {seconds})::integer",
            params,
        )


@dataclass(frozen=True)
class SeriesPoint:
    """One route's requests in one bucket."""

    count: int
    p50: float | None
    p95: float | None


@dataclass(frozen=True)
class Bucket:
    start: datetime
    count: int  # every request in the bucket, routed or not
    routes: dict[int, SeriesPoint]


def volume_series(*, since: datetime, until: datetime, bucket: timedelta) -> list[Bucket]:
    """Every ``bucket`` from ``since`` to ``until`` (empty ones too): the request count, and
    per route its count and p50/p95 of total_ms (percentile_cont, as ``route_figures``)."""
    with _sorting_room():
        return _volume_series(since=since, until=until, bucket=bucket)


def _volume_series(*, since: datetime, until: datetime, bucket: timedelta) -> list[Bucket]:
    seconds = int(bucket.total_seconds())
    # Buckets start on whole multiples of their size (an hour's on the hour, a day's at
    # midnight UTC), so the first one may begin before ``since``; only the window is counted.
    origin = datetime.fromtimestamp(math.floor(since.timestamp() / seconds) * seconds, tz=UTC)
    slots = max(1, math.ceil((until - origin).total_seconds() / seconds))
    qs = _window(since=since, until=until).annotate(
        slot=BucketIndex("created_at", origin=origin, seconds=seconds)
    )
    # One pass, grouped by bucket and route; the requests with no route count in the bars.
    totals: dict[int, int] = defaultdict(int)
    per_route: dict[int, dict[int, SeriesPoint]] = defaultdict(dict)
    grouped = qs.values("slot", "route_id")
    if connection.vendor == "postgresql":
        for values in grouped.annotate(
            n=Count("created_at"),
            p50=PercentileCont("total_ms", PERCENTILES["p50"]),
            p95=PercentileCont("total_ms", PERCENTILES["p95"]),
        ):
            totals[values["slot"]] += values["n"]
            if values["route_id"] is not None:
                per_route[values["slot"]][values["route_id"]] = SeriesPoint(
                    values["n"], _round(values["p50"]), _round(values["p95"])
                )
    else:
        counts: dict[tuple[int, int], int] = defaultdict(int)
        timings: dict[tuple[int, int], list[float]] = defaultdict(list)
        for slot, route_id, total_ms in grouped.values_list(
            "slot", "route_id", "total_ms"
        ).iterator():
            totals[slot] += 1
            if route_id is None:
                continue
            counts[slot, route_id] += 1
            if total_ms is not None:
                timings[slot, route_id].append(total_ms)
        for (slot, route_id), n in counts.items():
            totals_ms = timings[slot, route_id]
            per_route[slot][route_id] = SeriesPoint(
                n,
                _round(percentile_cont(totals_ms, PERCENTILES["p50"])),
                _round(percentile_cont(totals_ms, PERCENTILES["p95"])),
            )
    return [
        Bucket(
            start=origin + bucket * slot,
            count=totals.get(slot, 0),
            routes=dict(per_route.get(slot, {})),
        )
        for slot in range(slots)
    ]


@dataclass(frozen=True)
class TimingDashboard:
    since: datetime
    until: datetime
    bucket: timedelta
    rows: list[dict[str, Any]]  # route_figures: per route, then the overall row
    series: list[Bucket]
    routes: dict[int, Route]  # the routes the series names, by id, in the rows' order


def timing_dashboard_get(*, since: datetime, until: datetime, bucket: timedelta) -> TimingDashboard:
    """Everything the admin's timing dashboard and its CSV export show, for ``[since, until)``."""
    rows = route_figures(since=since, until=until)
    series = volume_series(since=since, until=until, bucket=bucket)
    route_ids = {route_id for point in series for route_id in point.routes}
    routes = {route.pk: route for route in _routes_in_order(route_ids)}
    return TimingDashboard(
        since=since, until=until, bucket=bucket, rows=rows, series=series, routes=routes
    )
