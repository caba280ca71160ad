"""Helpers for the API tests: authenticated clients and the default routes."""

from django.contrib.auth.base_user import AbstractBaseUser
from rest_framework.test import APIClient

from accounts.services import api_token_create
from routing.models import Route
from routing.services import route_catalog_invalidate
from tests.routing.factories import RouteFactory

# The public request object of DESIGN.md: exactly these keys.
REQUEST_KEYS = {
    "id",
    "status",
    "route",
    "routing",
    "answer",
    "cached",
    "escalated",
    "timings_ms",
    "created_at",
    "alerts",
}
# A submit's answer (JSON and the done/error events) adds the hand-chosen route's hint.
SUBMIT_KEYS = REQUEST_KEYS | {"suggested_route"}

DEFAULT_ROUTES = {
    "emergency": "Emergency",
    "booking": "Booking & Access",
    "tech": "TechSupport",
    "brand": "BrandTone",
}


def token_header(user: AbstractBaseUser) -> str:
    """The ``Authorization`` header value for a new API token of this user."""
    _, key = api_token_create(user=user)
    return f"Token {key}"


def token_client(user: AbstractBaseUser) -> APIClient:
    """An API client sending ``Authorization: Token <key>`` for this user."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=token_header(user))
    return client


def default_routes_ensure() -> dict[str, Route]:
    """The four default routes, as the data migration makes them.

    Normally the migration's rows are there; a transactional test elsewhere in the suite
    may have flushed them, so any missing one is recreated with its public slug and name.
    """
    routes = {r.slug: r for r in Route.objects.filter(slug__in=DEFAULT_ROUTES)}
    missing = [slug for slug in DEFAULT_ROUTES if slug not in routes]
    for slug in missing:
        routes[slug] = RouteFactory(
            slug=slug,
            name=DEFAULT_ROUTES[slug],
            is_emergency=slug == "emergency",
            keywords="",
            utterances="",
        )
    if missing:
        # Written behind the services' back: drop what a server may have cached meanwhile.
        route_catalog_invalidate()
    return routes
