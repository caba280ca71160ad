"""Input at the edges (issue 13): dates out of range in any filter and JSON nested too deep
are a 400 with a message on every endpoint, never a 500."""

import json

import pytest
from rest_framework.test import APIClient

from tests.requestlogs.factories import RequestLogFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory(username="stats-staff", is_staff=True))
    return client


EXTREME_FILTERS = [
    {"until": "9999-12-31"},
    {"since": "9999-12-31"},
    {"until": "0001-01-01"},
    {"since": "0001-01-01"},
    {"since": "9999-12-31T23:59:59-23:59"},
    {"until": "0001-01-01T00:00:00+23:59"},
    {"since": "9999-12-31T23:59:59.999999"},
    {"until": "1969-12-30"},
    {"until": "3000-01-02"},
]


@pytest.mark.parametrize("path", ["/api/v1/requests/", "/api/v1/stats/timings/"])
@pytest.mark.parametrize(
    "query", EXTREME_FILTERS, ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items())
)
def test_a_date_out_of_range_is_a_400_with_a_message(staff, path, query):
    response = staff.get(path, query)
    assert response.status_code == 400, response.content
    [field] = query
    assert "Use a moment between 1970-01-01 and 3000-01-01" in response.json()[field][0]


def test_stats_with_days_before_the_earliest_date_is_a_400_not_a_500(staff):
    response = staff.get("/api/v1/stats/timings/", {"until": "1970-01-02", "days": 366})
    assert response.status_code in (200, 400)


@pytest.mark.parametrize("offset", ["+20:00", "-23:59", "+15:59", "-00:00"])
def test_any_iso_offset_filters_on_every_database(staff, offset):
    response = staff.get("/api/v1/requests/", {"since": f"2026-01-01T00:00:00{offset}"})
    assert response.status_code == 200
    response = staff.get("/api/v1/stats/timings/", {"until": f"2026-01-01T00:00:00{offset}"})
    assert response.status_code == 200


def test_dates_in_range_still_filter(staff):
    RequestLogFactory()
    response = staff.get("/api/v1/requests/", {"since": "1970-01-01", "until": "2999-12-31"})
    assert response.status_code == 200
    assert response.json()["count"] == 1
    response = staff.get("/api/v1/stats/timings/", {"since": "2020-01-01T00:00:00+14:00"})
    assert response.status_code == 200


ADMIN_QUERIES = [
    "created_at__year=9999",
    "created_at__year=9999&created_at__month=12",
    "created_at__year=9999&created_at__month=12&created_at__day=31",
    "created_at__year=0",
    "created_at__year=99999999999999999999",
    "created_at__year=2026&created_at__month=13",
    "created_at__gte=9999-12-31T23:59:59-23:59",
    "created_at__lt=0001-01-01T00:00:00%2B23:59",
    "created_at__gte=not-a-date",
    "created_at__gte=2026-01-01T00:00:00%2B20:00",
]


@pytest.mark.parametrize("query", ADMIN_QUERIES)
def test_the_admins_date_filters_never_answer_500(client, query):
    RequestLogFactory()
    admin = UserFactory(username="admin-dates", is_staff=True, is_superuser=True)
    client.force_login(admin)
    response = client.get(f"/admin/requestlogs/requestlog/?{query}")
    # Django's admin answers a lookup it cannot use by redirecting with ?e=1.
    assert response.status_code in (200, 302), response.status_code


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# 900 levels parse (Python's parser follows them) and are refused by the field; 5,000 and
# more are past the parser's depth.
@pytest.mark.parametrize("levels", [900, 5000, 100_000])
@pytest.mark.parametrize(("endpoint", "field"), [("feedback", "helpful"), ("escalate", "note")])
def test_deep_json_on_a_requests_actions_is_a_400(staff, endpoint, field, levels):
    log = RequestLogFactory()
    for body in (deep(levels), f'{{"{field}": {deep(levels)}}}'):
        response = staff.post(
            f"/api/v1/requests/{log.pk}/{endpoint}/", body, content_type="application/json"
        )
        assert response.status_code in (400, 413), (response.status_code, response.content[:200])


@pytest.mark.parametrize("levels", [900, 5000, 100_000])
@pytest.mark.parametrize(
    "path", ["/api/v1/auth/token/", "/api/v1/auth/token/revoke/", "/api/v1/auth/token/revoke-all/"]
)
def test_deep_json_on_the_token_endpoints_is_never_a_500(staff, path, levels):
    for body in (deep(levels), '{"username": ' + deep(levels) + ', "password": "x"}'):
        client = APIClient() if path == "/api/v1/auth/token/" else staff
        response = client.post(path, body, content_type="application/json")
        assert response.status_code < 500, (response.status_code, response.content[:200])
        if path == "/api/v1/auth/token/":
            assert response.status_code in (400, 413)


def test_deep_json_as_a_query_or_form_is_a_400(staff):
    nested = json.dumps({"a": 1})
    assert staff.get("/api/v1/requests/", {"status": nested}).status_code == 400


def test_a_nul_the_database_would_refuse_is_a_400_on_the_token_endpoint():
    response = APIClient().post(
        "/api/v1/auth/token/",
        "username=%00nul&password=x%11y",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400, response.content
