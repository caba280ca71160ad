"""The admin's timing dashboard: per-route figures, charts over time, CSV exports.

Staff with ``requestlogs.view_dashboard`` see it (others get 403). Every figure comes from
one selector, ``requestlogs.stats.timing_dashboard_get``, which the stats API reads too;
the page, its charts and its CSV export are three renderings of the same numbers.
"""

import csv
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from rest_framework import serializers

from requestlogs.apis import STATS_MAX_DAYS, parse_moment
from requestlogs.charts import series_class, total_time_chart, volume_chart
from requestlogs.models import RequestLog, RoutingSource
from requestlogs.stats import PERCENTILES, TIMING_FIELDS, TimingDashboard, timing_dashboard_get

PERMISSION = "requestlogs.view_dashboard"
# The log export's rows (each request's text and location) are the request log's own: only
# for those who may read the log in the admin, whatever the dashboard shows them.
LOG_PERMISSION = "requestlogs.view_requestlog"

# A period's length and the bucket its charts use: a few dozen bars at most.
PERIODS: dict[str, tuple[str, timedelta, timedelta]] = {
    "hour": ("Last hour", timedelta(hours=1), timedelta(minutes=5)),
    "day": ("Last 24 hours", timedelta(days=1), timedelta(hours=1)),
    "7d": ("Last 7 days", timedelta(days=7), timedelta(hours=6)),
    "30d": ("Last 30 days", timedelta(days=30), timedelta(days=1)),
}
DEFAULT_PERIOD = "day"
# A custom range takes the smallest of these that keeps it within MAX_BUCKETS.
BUCKET_SIZES = (
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(days=1),
    timedelta(days=7),
)
MAX_BUCKETS = 60

TIMING_LABELS = {
    "routing_ms": "Routing",
    "ttft_ms": "First text",
    "assistant_ms": "Assistant",
    "total_ms": "Total",
}
LOG_COLUMNS = (
    "created_at",
    "id",
    "route__slug",
    "status",
    "routing_source",
    "confidence",
    "cached",
    "escalated",
    "feedback_helpful",
    "routing_ms",
    "ttft_ms",
    "assistant_ms",
    "total_ms",
    "channel",
    "location",
    "text",
)
LOG_CHUNK_ROWS = 2000
CSV_TYPE = "text/csv; charset=utf-8"
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def bucket_wording(size: timedelta) -> str:
    """A bucket's size as the page says it: "5 minutes", "1 hour", "7 days"."""
    seconds = int(size.total_seconds())
    for unit, length in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % length == 0:
            count = seconds // length
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def bucket_for(length: timedelta) -> timedelta:
    for size in BUCKET_SIZES:
        if length / size <= MAX_BUCKETS:
            return size
    return BUCKET_SIZES[-1]


class PeriodForm(forms.Form):
    period = forms.ChoiceField(
        choices=[*((key, label) for key, (label, _, _) in PERIODS.items()), ("custom", "Custom")],
        required=False,
    )
    since = forms.CharField(
        required=False,
        label="First day",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    until = forms.CharField(
        required=False,
        label="Last day",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def _moment(self, name: str, *, end_of_day: bool) -> datetime | None:
        value = self.cleaned_data.get(name, "").strip()
        if not value:
            return None
        try:
            return parse_moment(value, end_of_day=end_of_day)
        except serializers.ValidationError as exc:
            raise forms.ValidationError({name: [str(message) for message in exc.detail]}) from exc

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        period = data.get("period") or DEFAULT_PERIOD
        now = timezone.now()
        if period != "custom":
            _, length, bucket = PERIODS[period]
            return {"period": period, "since": now - length, "until": now, "bucket": bucket}
        since = self._moment("since", end_of_day=False)
        until = self._moment("until", end_of_day=True) or now
        if since is None:
            raise forms.ValidationError({"since": ["A custom period needs its first day."]})
        if since >= until:
            raise forms.ValidationError({"until": ["The last day must not be before the first."]})
        if until - since > timedelta(days=STATS_MAX_DAYS):
            raise forms.ValidationError(
                {"until": [f"A period is at most {STATS_MAX_DAYS} days long."]}
            )
        return {
            "period": period,
            "since": since,
            "until": until,
            "bucket": bucket_for(until - since),
        }


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


class _Echo:
    """csv.writer's file: each row written is handed straight back to the response."""

    def write(self, value: str) -> str:
        return value


def _attachment(response: HttpResponse | StreamingHttpResponse, filename: str) -> None:
    response["Content-Disposition"] = f'attachment; filename="{filename}"'


def _csv_response(rows: Iterator[list[Any]], filename: str) -> HttpResponse:
    """Figures already computed, as one CSV body (small: a row per route or bucket)."""
    writer = csv.writer(_Echo())
    response = HttpResponse(
        "".join(writer.writerow([_cell(value) for value in row]) for row in rows),
        content_type=CSV_TYPE,
    )
    _attachment(response, filename)
    return response


def _figures_rows(dashboard: TimingDashboard) -> Iterator[list[Any]]:
    yield [
        "since",
        "until",
        "route",
        "name",
        "count",
        *(f"{column}_{label}" for column in TIMING_FIELDS for label in PERCENTILES),
        "error_rate",
        "timeout_rate",
        "cache_hit_rate",
        "escalation_rate",
        "rated",
        "not_helpful_rate",
        *(f"source_{source}" for source in RoutingSource.values),
    ]
    for row in dashboard.rows:
        yield [
            dashboard.since,
            dashboard.until,
            row["slug"] or "",
            row["name"],
            row["count"],
            *(row[column][label] for column in TIMING_FIELDS for label in PERCENTILES),
            row["error_rate"],
            row["timeout_rate"],
            row["cache_hit_rate"],
            row["escalation_rate"],
            row["rated"],
            row["not_helpful_rate"],
            *(row["sources"][source] for source in RoutingSource.values),
        ]


def _series_rows(dashboard: TimingDashboard) -> Iterator[list[Any]]:
    yield ["bucket_start", "route", "count", "total_ms_p50", "total_ms_p95"]
    for bucket in dashboard.series:
        yield [bucket.start, "", bucket.count, None, None]
        for route_id, point in bucket.routes.items():
            yield [bucket.start, dashboard.routes[route_id].slug, point.count, point.p50, point.p95]


def _log_chunk(
    since: datetime, until: datetime, after: tuple[datetime, Any] | None
) -> list[tuple[Any, ...]]:
    """The next LOG_CHUNK_ROWS requests of the period after ``after`` (created_at, id)."""
    qs = RequestLog.objects.filter(created_at__gte=since, created_at__lt=until)
    if after is not None:
        moment, pk = after
        qs = qs.filter(Q(created_at__gt=moment) | Q(created_at=moment, pk__gt=pk))
    return list(qs.order_by("created_at", "pk").values_list(*LOG_COLUMNS)[:LOG_CHUNK_ROWS])


async def _log_csv(since: datetime, until: datetime) -> AsyncIterator[str]:
    """The period's request log as CSV, a chunk at a time.

    An asynchronous iterator, each chunk its own keyset query: the ASGI server streams it as
    it is read (it would read a synchronous one whole into memory first), and no database
    cursor stays open between chunks.
    """
    writer = csv.writer(_Echo())
    yield writer.writerow([column.replace("__", "_") for column in LOG_COLUMNS])
    after: tuple[datetime, Any] | None = None
    while True:
        rows = await sync_to_async(_log_chunk)(since, until, after)
        if rows:
            yield "".join(writer.writerow([_cell(value) for value in row]) for row in rows)
        if len(rows) < LOG_CHUNK_ROWS:
            return
        after = (rows[-1][0], rows[-1][1])  # LOG_COLUMNS begins with created_at, id


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}" if value >= 10 else f"{value:,.1f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _display_rows(dashboard: TimingDashboard) -> list[dict[str, Any]]:
    """The figures as the page shows them: milliseconds and percentages, "—" for none."""
    return [
        {
            "slug": row["slug"],
            "name": row["name"],
            "count": row["count"],
            "timings": [
                _ms(row[column][label]) for column in TIMING_FIELDS for label in PERCENTILES
            ],
            "rates": [
                _pct(row[key])
                for key in (
                    "error_rate",
                    "timeout_rate",
                    "cache_hit_rate",
                    "escalation_rate",
                    "not_helpful_rate",
                )
            ],
            "rated": row["rated"],
            "sources": [_pct(row["sources"][source]) for source in RoutingSource.values],
        }
        for row in dashboard.rows
    ]


def _stamp(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%Y%m%d-%H%M}"


def dashboard_view(
    request: HttpRequest, site: admin.AdminSite
) -> HttpResponse | StreamingHttpResponse:
    """The page, or with ``export=figures|series|log`` its CSV (the same period)."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    form = PeriodForm(request.GET or {"period": DEFAULT_PERIOD})
    context: dict[str, Any] = {
        **site.each_context(request),
        "title": "Timing dashboard",
        "opts": RequestLog._meta,
        "form": form,
    }
    if not form.is_valid():
        return TemplateResponse(request, "admin/requestlogs/dashboard.html", context, status=400)
    period = form.cleaned_data
    since, until, bucket = period["since"], period["until"], period["bucket"]

    export = request.GET.get("export")
    name = f"{_stamp(since)}-{_stamp(until)}"
    if export == "log":
        if not request.user.has_perm(LOG_PERMISSION):
            raise PermissionDenied
        response = StreamingHttpResponse(_log_csv(since, until), content_type=CSV_TYPE)
        _attachment(response, f"requests-{name}.csv")
        return response
    dashboard = timing_dashboard_get(since=since, until=until, bucket=bucket)
    if export == "figures":
        return _csv_response(_figures_rows(dashboard), f"timings-{name}.csv")
    if export == "series":
        return _csv_response(_series_rows(dashboard), f"timings-over-time-{name}.csv")

    query = request.GET.copy()
    query.pop("export", None)
    context |= {
        "dashboard": dashboard,
        "period_label": PERIODS[period["period"]][0] if period["period"] in PERIODS else "Custom",
        "timing_labels": TIMING_LABELS,
        "sources": RoutingSource.choices,
        "legend": [
            (series_class(order), route.name)
            for order, route in enumerate(dashboard.routes.values())
        ],
        "total_chart": total_time_chart(dashboard.series, dashboard.routes, bucket),
        "volume_chart": volume_chart(dashboard.series, bucket),
        "query": query.urlencode(),
        "rows": _display_rows(dashboard),
        "bucket_wording": bucket_wording(bucket),
        "percentiles": list(PERCENTILES),
        "changelist_query": urlencode(
            {"created_at__gte": since.isoformat(), "created_at__lt": until.isoformat()}
        ),
    }
    return TemplateResponse(request, "admin/requestlogs/dashboard.html", context)
