"""Timing statistics: percentiles as PostgreSQL's percentile_cont, rates, the window, the API."""

import random
import statistics
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from requestlogs.models import RequestLog, RequestStatus
from requestlogs.stats import (
    TIMING_FIELDS,
    _python_percentiles,
    _window,
    percentile_cont,
    timing_stats,
)
from tests.requestlogs.api_factories import token_client
from tests.requestlogs.factories import RequestLogFactory, UserFactory
from tests.routing.factories import RouteFactory

STATS_URL = "/api/v1/stats/timings/"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _log(route, minutes_ago: float = 60, **fields) -> RequestLog:
    return RequestLogFactory(
        route=route, created_at=timezone.now() - timedelta(minutes=minutes_ago), **fields
    )


@pytest.fixture
def known_data():
    """Route `range` has total_ms 100, 200 ... 1000: p50 550 and p95 955 by percentile_cont."""
    ranged = RouteFactory(slug="range", name="Range", priority=10)
    single = RouteFactory(slug="single", name="Single", priority=20)
    for i in range(1, 11):
        _log(
            ranged,
            total_ms=100.0 * i,
            routing_ms=float(i),
            # Two rows never reached the first token: ttft is NULL there, not zero.
            ttft_ms=10.0 * i if i <= 8 else None,
            assistant_ms=None,
            status={1: RequestStatus.TIMEOUT, 2: RequestStatus.ERROR}.get(i, RequestStatus.OK),
            cached=i in {4, 5, 6},
        )
    _log(single, total_ms=42.0, routing_ms=1.0, ttft_ms=5.0, assistant_ms=40.0)
    # Killed before routing: counted overall, in no route's row.
    _log(
        None,
        status=RequestStatus.RECEIVED,
        routing_ms=None,
        ttft_ms=None,
        assistant_ms=None,
        total_ms=None,
    )
    # Outside the window.
    _log(ranged, minutes_ago=60 * 24 * 30, total_ms=99999.0)
    return ranged, single


def _window_args(days: int = 7) -> dict:
    now = timezone.now()
    return {"since": now - timedelta(days=days), "until": now + timedelta(seconds=1)}


class TestPercentileCont:
    def test_linear_interpolation_between_ranks(self):
        values = [100.0 * i for i in range(10, 0, -1)]  # order does not matter

        assert percentile_cont(values, 0.5) == pytest.approx(550.0)
        assert percentile_cont(values, 0.95) == pytest.approx(955.0)
        assert percentile_cont(values, 0.0) == 100.0
        assert percentile_cont(values, 1.0) == 1000.0

    def test_no_values_is_none_and_one_value_is_itself(self):
        assert percentile_cont([], 0.5) is None
        assert percentile_cont([7.5], 0.95) == 7.5

    def test_agrees_with_statistics_quantiles_inclusive(self):
        rng = random.Random(20260101)
        for size in (2, 3, 10, 57, 400):
            values = [rng.uniform(0, 5000) for _ in range(size)]
            cuts = statistics.quantiles(values, n=100, method="inclusive")

            assert percentile_cont(values, 0.5) == pytest.approx(cuts[49])
            assert percentile_cont(values, 0.95) == pytest.approx(cuts[94])

    @pytest.mark.django_db
    @pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
    def test_agrees_with_postgresql(self):
        rng = random.Random(7)
        for size in (1, 2, 9, 101):
            values = [round(rng.uniform(0, 5000), 3) for _ in range(size)]
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v),"
                    " percentile_cont(0.95) WITHIN GROUP (ORDER BY v)"
                    " FROM unnest(%s::float8[]) AS v",
                    [values],
                )
                p50, p95 = cursor.fetchone()

            assert percentile_cont(values, 0.5) == pytest.approx(p50)
            assert percentile_cont(values, 0.95) == pytest.approx(p95)


@pytest.mark.django_db
class TestTimingStats:
    def test_numbers_on_a_known_data_set(self, known_data):
        rows = timing_stats(**_window_args())

        assert [row["slug"] for row in rows] == ["range", "single", None]
        ranged, single, overall = rows
        assert ranged["name"] == "Range"
        assert ranged["count"] == 10
        assert ranged["total_ms"] == {"p50": 550.0, "p95": 955.0}
        assert ranged["routing_ms"] == {"p50": 5.5, "p95": 9.55}
        # NULL ttft rows are ignored: the percentiles of 10, 20 ... 80.
        assert ranged["ttft_ms"] == {"p50": 45.0, "p95": 76.5}
        assert ranged["assistant_ms"] == {"p50": None, "p95": None}
        assert ranged["error_rate"] == 0.2
        assert ranged["cache_hit_rate"] == 0.3

        assert single["count"] == 1
        assert single["total_ms"] == {"p50": 42.0, "p95": 42.0}
        assert single["error_rate"] == 0.0

        assert overall["name"] == "All routes"
        assert overall["count"] == 12
        # 42, 100, 200 ... 1000 (the received row has no total): the middle one.
        assert overall["total_ms"]["p50"] == 500.0
        assert overall["error_rate"] == round(2 / 12, 4)

    def test_an_empty_window_has_only_an_empty_overall_row(self):
        rows = timing_stats(**_window_args())

        assert rows == [
            {
                "slug": None,
                "name": "All routes",
                "count": 0,
                **{column: {"p50": None, "p95": None} for column in TIMING_FIELDS},
                "error_rate": None,
                "cache_hit_rate": None,
            }
        ]

    def test_the_database_and_python_paths_agree(self):
        rng = random.Random(99)
        routes = [RouteFactory() for _ in range(3)]
        for _ in range(120):
            _log(
                rng.choice(routes),
                minutes_ago=rng.uniform(1, 600),
                **{
                    column: None if rng.random() < 0.15 else round(rng.uniform(0, 9000), 3)
                    for column in TIMING_FIELDS
                },
            )
        args = _window_args()

        rows = {row["slug"]: row for row in timing_stats(**args)}
        per_route, overall = _python_percentiles(_window(**args))

        for route in routes:
            for column in TIMING_FIELDS:
                for label in ("p50", "p95"):
                    expected = per_route[route.pk][f"{column}_{label}"]
                    assert rows[route.slug][column][label] == pytest.approx(expected, abs=1e-3)
        for column in TIMING_FIELDS:
            assert rows[None][column]["p50"] == pytest.approx(overall[f"{column}_p50"], abs=1e-3)


@pytest.mark.django_db
class TestTimingStatsApi:
    def test_staff_get_routes_and_overall(self, known_data):
        staff = UserFactory(is_staff=True)

        response = token_client(staff).get(STATS_URL)

        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"since", "until", "routes", "overall"}
        assert [row["slug"] for row in body["routes"]] == ["range", "single"]
        assert body["routes"][0]["total_ms"] == {"p50": 550.0, "p95": 955.0}
        assert body["overall"]["count"] == 12

    def test_days_narrows_the_window(self, known_data):
        ranged, _ = known_data
        _log(ranged, minutes_ago=60 * 24 * 2, total_ms=5.0)
        client = token_client(UserFactory(is_staff=True))

        assert client.get(STATS_URL, {"days": 1}).json()["routes"][0]["count"] == 10
        assert client.get(STATS_URL, {"days": 3}).json()["routes"][0]["count"] == 11

    def test_since_and_until_dates(self, known_data):
        client = token_client(UserFactory(is_staff=True))
        today = timezone.localdate()

        older = client.get(
            STATS_URL, {"since": (today - timedelta(days=40)).isoformat(), "until": "2000-01-02"}
        )
        assert older.status_code == 400  # until before since

        month = client.get(STATS_URL, {"since": (today - timedelta(days=40)).isoformat()})
        assert month.json()["routes"][0]["count"] == 11  # the 30-day-old row is in

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"since": "last week"}, "since"),
            ({"until": "2026-02-30"}, "until"),
            ({"days": 0}, "days"),
            ({"days": "seven"}, "days"),
            ({"since": "2026-01-01", "days": 3}, "days"),
        ],
    )
    def test_bad_parameters_are_a_400(self, params, field):
        client = token_client(UserFactory(is_staff=True))

        response = client.get(STATS_URL, params)

        assert response.status_code == 400
        assert response.json()[field]

    def test_staff_only(self):
        assert token_client(UserFactory()).get(STATS_URL).status_code == 403
        assert APIClient().get(STATS_URL).status_code == 401
