"""The timing dashboard's charts, drawn on the server as SVG.

No charting library and no script: the desk works offline and the Content Security Policy
allows no inline script or style, so colours come from classes in clubos/admin.css and
shapes from SVG presentation attributes. Every value is formatted by Django's escaping
helpers, never pasted into the markup.
"""

from collections.abc import Sequence
from datetime import timedelta

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from requestlogs.stats import Bucket
from routing.models import Route

WIDTH = 900
HEIGHT = 240
LEFT = 64  # room for the y axis' labels
RIGHT = 12
TOP = 12
BOTTOM = 28  # room for the x axis' labels
X_LABELS = 6
Y_TICKS = 4
PALETTE_SIZE = 8


def _n(value: float) -> str:
    """A coordinate as SVG takes it (format_html escapes its arguments, so no format specs)."""
    return f"{value:.1f}"


def series_class(index: int) -> str:
    """The CSS class of a route's colour (clubos/admin.css has PALETTE_SIZE of them)."""
    return f"chart-series-{index % PALETTE_SIZE}"


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (an axis' top)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** len(str(int(value)))
    for step in (0.1, 0.2, 0.25, 0.5, 1.0):
        if value <= power * step:
            return power * step
    return power


def _bucket_label(bucket: Bucket, size: timedelta) -> str:
    moment = timezone.localtime(bucket.start)
    if size >= timedelta(days=1):
        return f"{moment:%b %d}"
    if size >= timedelta(hours=6):
        return f"{moment:%b %d %H:%M}"
    return f"{moment:%H:%M}"


class _Frame:
    """Maps bucket indexes and values to the plot area."""

    def __init__(self, buckets: int, top_value: float) -> None:
        self.buckets = buckets
        self.top_value = top_value
        self.width = WIDTH - LEFT - RIGHT
        self.height = HEIGHT - TOP - BOTTOM

    def x(self, index: float) -> float:
        # Each bucket is a column; a point sits in the middle of its column.
        return LEFT + self.width * (index + 0.5) / self.buckets

    def y(self, value: float) -> float:
        return TOP + self.height * (1 - value / self.top_value)

    def axes(
        self, series: Sequence[Bucket], size: timedelta, unit: str
    ) -> tuple[SafeString, SafeString]:
        ticks = format_html_join(
            "",
            '<line class="chart-grid" x1="{}" x2="{}" y1="{}" y2="{}"></line>'
            '<text class="chart-label" x="{}" y="{}" text-anchor="end">{}</text>',
            (
                (
                    LEFT,
                    WIDTH - RIGHT,
                    _n(self.y(value)),
                    _n(self.y(value)),
                    LEFT - 6,
                    _n(self.y(value) + 4),
                    f"{value:,.0f}{unit}" if value == int(value) else f"{value:,.1f}{unit}",
                )
                for value in (self.top_value * i / Y_TICKS for i in range(Y_TICKS + 1))
            ),
        )
        step = max(1, round(len(series) / X_LABELS))
        labels = format_html_join(
            "",
            '<text class="chart-label" x="{}" y="{}" text-anchor="middle">{}</text>',
            (
                (_n(self.x(index)), HEIGHT - 8, _bucket_label(bucket, size))
                for index, bucket in enumerate(series)
                if index % step == 0
            ),
        )
        return ticks, labels


def _svg(label: str, body: SafeString) -> SafeString:
    return format_html(
        '<svg class="chart" role="img" aria-label="{}" viewBox="0 0 {} {}" '
        'preserveAspectRatio="xMidYMid meet"><title>{}</title>{}</svg>',
        label,
        WIDTH,
        HEIGHT,
        label,
        body,
    )


def _runs(points: list[tuple[int, float | None]]) -> list[list[tuple[int, float]]]:
    """Consecutive points with a value: a bucket with no request breaks the line."""
    runs: list[list[tuple[int, float]]] = [[]]
    for index, value in points:
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((index, value))
    return [run for run in runs if run]


def total_time_chart(
    series: Sequence[Bucket], routes: dict[int, Route], size: timedelta
) -> SafeString:
    """One line per route: p50 of the total time solid, p95 dashed, per bucket."""
    values = [
        point.p95 if point.p95 is not None else point.p50
        for bucket in series
        for point in bucket.routes.values()
    ]
    frame = _Frame(len(series), _nice_ceiling(max((v for v in values if v is not None), default=0)))
    ticks, labels = frame.axes(series, size, " ms")
    shapes: list[SafeString] = []
    for order, (route_id, route) in enumerate(routes.items()):
        for label, dashed in (("p50", False), ("p95", True)):
            points = [
                (
                    index,
                    getattr(bucket.routes[route_id], label) if route_id in bucket.routes else None,
                )
                for index, bucket in enumerate(series)
            ]
            css = f"chart-line {series_class(order)}" + (" chart-line--p95" if dashed else "")
            for run in _runs(points):
                coordinates = " ".join(f"{frame.x(i):.1f},{frame.y(v):.1f}" for i, v in run)
                shapes.append(
                    format_html(
                        '<polyline class="{}" data-route="{}" data-percentile="{}" fill="none" '
                        'points="{}"><title>{} {}</title></polyline>',
                        css,
                        route.slug,
                        label,
                        coordinates,
                        route.name,
                        label,
                    )
                )
                shapes.extend(
                    format_html(
                        '<circle class="chart-dot {}" cx="{}" cy="{}" r="2.5">'
                        "<title>{}, {}: {} {} ms</title></circle>",
                        series_class(order),
                        _n(frame.x(i)),
                        _n(frame.y(v)),
                        route.name,
                        _bucket_label(series[i], size),
                        label,
                        f"{v:,.0f}",
                    )
                    for i, v in run
                )
    return _svg(
        "Total time per route over time: p50 solid, p95 dashed",
        ticks + labels + mark_safe("".join(shapes)),  # noqa: S308 - built by format_html
    )


def volume_chart(series: Sequence[Bucket], size: timedelta) -> SafeString:
    """A bar per bucket: how many requests arrived."""
    frame = _Frame(len(series), _nice_ceiling(max((b.count for b in series), default=0)))
    ticks, labels = frame.axes(series, size, "")
    bar_width = max(1.0, frame.width / len(series) * 0.7)
    bars = format_html_join(
        "",
        '<rect class="chart-bar" x="{}" y="{}" width="{}" height="{}">'
        "<title>{}: {} requests</title></rect>",
        (
            (
                _n(frame.x(index) - bar_width / 2),
                _n(frame.y(bucket.count)),
                _n(bar_width),
                _n(frame.y(0) - frame.y(bucket.count)),
                _bucket_label(bucket, size),
                bucket.count,
            )
            for index, bucket in enumerate(series)
            if bucket.count
        ),
    )
    return _svg("Requests per bucket", ticks + labels + bars)
