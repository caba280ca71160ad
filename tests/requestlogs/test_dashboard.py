"""The admin's timing dashboard: its figures, its buckets over time, its CSV, who may see it.

The same tests run on SQLite (percentiles in Python) and on PostgreSQL (percentile_cont in
the database): the figures must not depend on the backend.
"""

import csv
import html
import importlib
import io
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from django.apps import apps as django_apps
from django.contrib.auth.models import Permission
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from requestlogs.models import RequestStatus, RoutingSource
from requestlogs.stats import API_KEYS, route_figures, timing_stats, volume_series
from tests.requestlogs.factories import RequestLogFactory, UserFactory, roles_ensure
from tests.routing.factories import RouteFactory

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:requestlogs_requestlog_dashboard")
HOUR = timedelta(hours=1)


def _csv(response) -> list[dict[str, str]]:
    if not response.streaming:
        chunks = [response.content]
    elif response.is_async:
        # The log's export streams asynchronously, as the ASGI server serves it.
        async def read() -> list[bytes]:
            return [chunk async for chunk in response.streaming_content]

        chunks = async_to_sync(read)()
    else:
        chunks = list(response.streaming_content)
    return list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))


@pytest.fixture
def manager(client):
    client.force_login(UserFactory(superuser=True))
    return client


@pytest.fixture
def rated_route():
    """Ten requests of one route: 1 timeout, 1 error, 3 cache hits, 2 escalations; four
    rated (one not helpful); routed 6 by the rules, 3 by hand, 1 by the LLM."""
    route = RouteFactory(slug="tech-r", name="Tech R")
    now = timezone.now()
    for i in range(10):
        RequestLogFactory(
            route=route,
            created_at=now - timedelta(minutes=10 + i),
            status={0: RequestStatus.TIMEOUT, 1: RequestStatus.ERROR}.get(i, RequestStatus.OK),
            cached=i in {2, 3, 4},
            escalated=i in {5, 6},
            feedback_helpful={7: False, 8: True, 9: True, 6: True}.get(i),
            routing_source=(
                RoutingSource.MANUAL
                if i in {0, 1, 2}
                else RoutingSource.LLM
                if i == 3
                else RoutingSource.RULES
            ),
            total_ms=100.0 * (i + 1),
        )
    return route


def test_rates_and_routing_sources_per_route(rated_route):
    now = timezone.now()
    rows = route_figures(since=now - HOUR, until=now)

    route_row, overall = rows
    assert route_row["slug"] == "tech-r"
    assert route_row["count"] == 10
    assert route_row["error_rate"] == 0.2  # timeout or error, as the stats API has it
    assert route_row["timeout_rate"] == 0.1
    assert route_row["cache_hit_rate"] == 0.3
    assert route_row["escalation_rate"] == 0.2
    assert route_row["rated"] == 4
    assert route_row["not_helpful_rate"] == 0.25
    assert route_row["sources"] == {
        "manual": 0.3,
        "rules": 0.6,
        "local": 0.0,
        "llm": 0.1,
        "default": 0.0,
    }
    assert route_row["total_ms"] == {"p50": 550.0, "p95": 955.0}
    assert overall["slug"] is None and overall["count"] == 10


def test_the_stats_api_reads_the_dashboards_figures(rated_route):
    now = timezone.now()
    window = {"since": now - HOUR, "until": now}

    assert timing_stats(**window) == [
        {key: row[key] for key in API_KEYS} for row in route_figures(**window)
    ]


def test_buckets_start_on_the_hour_and_each_request_is_in_its_own():
    route = RouteFactory(slug="booking-r")
    origin = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    # On an edge, just before the next one, and two hours later; 9:00 is in the first bucket.
    for moment, total in (
        (origin, 100.0),
        (origin + timedelta(minutes=59, seconds=59, microseconds=999_000), 300.0),
        (origin + HOUR, 1000.0),
        (origin + 3 * HOUR, 50.0),
    ):
        RequestLogFactory(route=route, created_at=moment, total_ms=total)
    RequestLogFactory(route=None, created_at=origin + 3 * HOUR, total_ms=None)

    series = volume_series(since=origin, until=origin + 4 * HOUR, bucket=HOUR)

    assert [bucket.start for bucket in series] == [origin + HOUR * i for i in range(4)]
    assert [bucket.count for bucket in series] == [2, 1, 0, 2]
    first = series[0].routes[route.pk]
    assert (first.count, first.p50, first.p95) == (2, 200.0, 290.0)
    assert series[1].routes[route.pk].p50 == 1000.0
    assert series[2].routes == {}
    assert series[3].routes[route.pk].count == 1  # the unrouted one is only in the bar


def test_a_period_that_starts_mid_bucket_counts_only_the_period():
    route = RouteFactory()
    origin = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    RequestLogFactory(route=route, created_at=origin + timedelta(minutes=10))
    RequestLogFactory(route=route, created_at=origin + timedelta(minutes=40))

    series = volume_series(since=origin + timedelta(minutes=30), until=origin + HOUR, bucket=HOUR)

    assert [(bucket.start, bucket.count) for bucket in series] == [(origin, 1)]


def test_dashboard_page_shows_each_routes_figures(manager, rated_route):
    response = manager.get(DASHBOARD, {"period": "day"})

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-route="tech-r"' in page
    assert "<svg" in page and "<polyline" in page
    assert "20.0%" in page and "25.0%" in page  # failed; not helpful of the rated
    assert "buckets of 1 hour" in page


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"period": "custom"}, "needs its first day"),
        ({"period": "custom", "since": "yesterday"}, "ISO 8601"),
        ({"period": "custom", "since": "9999-12-31"}, "between 1970-01-01 and 3000-01-01"),
        ({"period": "custom", "since": "2026-12-05", "until": "2026-12-01"}, "must not be before"),
        ({"period": "custom", "since": "2020-01-01", "until": "2026-12-01"}, "at most 366 days"),
        ({"period": "fortnight"}, "Select a valid choice"),
    ],
)
def test_a_bad_period_is_a_400_with_a_message(manager, params, message):
    response = manager.get(DASHBOARD, params)

    assert response.status_code == 400
    assert message in response.content.decode()


def test_a_custom_period_of_whole_days(manager, rated_route):
    today = timezone.localdate()
    response = manager.get(
        DASHBOARD,
        {"period": "custom", "since": str(today - timedelta(days=1)), "until": str(today)},
    )

    assert response.status_code == 200
    dashboard = response.context["dashboard"]
    assert dashboard.until - dashboard.since == timedelta(days=2)
    assert dashboard.bucket == HOUR  # 48 of them
    assert dashboard.rows[-1]["count"] == 10


def test_csv_exports_the_figures_the_series_and_the_log(manager, rated_route):
    figures = _csv(manager.get(DASHBOARD, {"period": "day", "export": "figures"}))
    assert [row["route"] for row in figures] == ["tech-r", ""]
    assert figures[0]["count"] == "10"
    assert figures[0]["total_ms_p50"] == "550.0"
    assert figures[0]["not_helpful_rate"] == "0.25"
    assert figures[0]["source_rules"] == "0.6"

    series = _csv(manager.get(DASHBOARD, {"period": "hour", "export": "series"}))
    # 5-minute buckets on the clock's fives: 12, or 13 when the hour starts mid-bucket.
    assert len([row for row in series if row["route"] == ""]) in {12, 13}
    assert sum(int(row["count"]) for row in series if row["route"] == "tech-r") == 10

    response = manager.get(DASHBOARD, {"period": "day", "export": "log"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="requests-')
    log = _csv(response)
    assert len(log) == 10
    assert {row["route_slug"] for row in log} == {"tech-r"}


def test_the_log_export_defuses_spreadsheet_formulas(manager):
    RequestLogFactory(text='=HYPERLINK("http://evil.test","bay 3")', location="+Bedford")

    (row,) = _csv(manager.get(DASHBOARD, {"export": "log"}))

    assert row["text"] == '\'=HYPERLINK("http://evil.test","bay 3")'
    assert row["location"] == "'+Bedford"


def test_staff_without_the_permission_get_403_and_no_link(client):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_requestlog"))
    client.force_login(staff)

    assert client.get(DASHBOARD).status_code == 403
    assert client.get(reverse("admin:requestlogs_requestlog_changelist")).status_code == 200
    assert DASHBOARD not in client.get(reverse("admin:index")).content.decode()


def test_the_permission_opens_it_and_the_admin_index_links_it(client):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client.force_login(staff)

    assert client.get(DASHBOARD).status_code == 200
    assert f'href="{DASHBOARD}"' in client.get(reverse("admin:index")).content.decode()


def test_the_request_log_export_needs_the_permission_to_read_the_log(client):
    RequestLogFactory(text="Customer locked out of bay 4", created_at=timezone.now() - HOUR)
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client.force_login(staff)

    page = client.get(DASHBOARD)

    assert page.status_code == 200
    assert "export=log" not in page.content.decode()
    assert client.get(DASHBOARD, {"export": "figures"}).status_code == 200
    assert client.get(DASHBOARD, {"export": "log"}).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_requestlog"))
    (row,) = _csv(client.get(DASHBOARD, {"export": "log"}))
    assert row["text"] == "Customer locked out of bay 4"


def test_people_who_are_not_staff_are_sent_to_the_login(client):
    client.force_login(UserFactory())

    response = client.get(DASHBOARD)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_the_admin_and_operator_roles_see_it_and_support_does_not(client):
    roles_ensure()
    migration = importlib.import_module("requestlogs.migrations.0007_dashboard_figures_index")
    # A flushing test elsewhere may have put the roles back without it: grant as migrated.
    migration.grant_dashboard(django_apps, SimpleNamespace(connection=connection))
    for role, allowed in (("admin", True), ("operator", True), ("support", False)):
        user = UserFactory(is_staff=True, groups=[role])
        client.force_login(user)
        assert (client.get(DASHBOARD).status_code == 200) is allowed, role


def test_the_dashboard_links_to_its_periods_requests_in_the_log(manager, rated_route):
    RequestLogFactory(route=rated_route, created_at=timezone.now() - timedelta(days=3))
    page = manager.get(DASHBOARD, {"period": "day"}).content.decode()

    link = re.search(r'href="(/admin/requestlogs/requestlog/\?[^"]+)"', page)
    assert link is not None
    response = manager.get(html.unescape(link.group(1)))

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 10  # not the one three days ago


def test_the_log_export_streams_every_request_once_across_chunks(manager, monkeypatch):
    monkeypatch.setattr("requestlogs.dashboard.LOG_CHUNK_ROWS", 2)
    moment = timezone.now() - timedelta(minutes=30)
    # Three share one moment: the chunks continue after (created_at, id), never skip a tie.
    logs = [RequestLogFactory(created_at=moment) for _ in range(3)]
    logs += [RequestLogFactory(created_at=moment + timedelta(minutes=i)) for i in range(1, 5)]

    response = manager.get(DASHBOARD, {"period": "hour", "export": "log"})

    assert response.is_async
    exported = [row["id"] for row in _csv(response)]
    assert sorted(exported) == sorted(str(log.pk) for log in logs)
    assert len(exported) == len(set(exported)) == 7
