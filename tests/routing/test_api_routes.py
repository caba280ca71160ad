"""GET /api/v1/routes/: what an API client can choose as `route`."""

import pytest
from rest_framework.test import APIClient

from routing.services import route_update
from tests.requestlogs.api_factories import default_routes_ensure, token_client
from tests.requestlogs.factories import UserFactory
from tests.routing.factories import EmergencyRouteFactory, RouteFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/routes/"


@pytest.fixture
def client() -> APIClient:
    return token_client(UserFactory())


def test_lists_the_enabled_routes_in_priority_order(client):
    default_routes_ensure()
    safety = EmergencyRouteFactory(slug="safety", priority=0)
    events = RouteFactory(slug="events", priority=500)
    RouteFactory(slug="retired", enabled=False)

    response = client.get(URL)

    assert response.status_code == 200
    routes = response.json()
    assert isinstance(routes, list)  # not paginated
    slugs = [r["slug"] for r in routes]
    assert slugs[0] == "safety"
    assert slugs[-1] == "events"
    assert {"emergency", "booking", "tech", "brand"} <= set(slugs)
    assert "retired" not in slugs
    assert "auto" not in slugs
    assert routes[0] == {
        "slug": "safety",
        "name": safety.name,
        "description": safety.description,
        "is_emergency": True,
    }
    assert routes[-1]["is_emergency"] is False
    assert routes[-1]["name"] == events.name


def test_disabling_a_route_removes_it(client):
    events = RouteFactory(slug="events")
    assert "events" in [r["slug"] for r in client.get(URL).json()]

    route_update(route=events, enabled=False)

    assert "events" not in [r["slug"] for r in client.get(URL).json()]


def test_login_required():
    assert APIClient().get(URL).status_code == 401
