"""The web console at ``/``: a server-rendered page; the request itself goes through the JSON API.

The view only reads, through selectors: the enabled routes from the cached catalog and the
person's own recent requests. Submitting, streaming, feedback and escalation are the
browser's ``fetch`` calls to ``/api/v1/requests/`` (see ``clubos/static/clubos/console.js``).
"""

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from requestlogs.models import RequestLog
from requestlogs.selectors import alert_payload, request_logs_visible_to
from requestlogs.validation import COMMENT_MAX_CHARS, LOCATION_MAX_CHARS, TEXT_MAX_CHARS
from routing.selectors import RouteCatalog, RouteSnapshot, route_catalog_get

HISTORY_SIZE = 10
LOCATION_SUGGESTIONS = 8
LOCATION_SCAN = 50  # recent requests whose locations feed the suggestions


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One of the person's recent requests, as the history list shows it."""

    log: RequestLog
    route_slug: str
    route_name: str
    emergency: bool


def _history_row(log: RequestLog, catalog: RouteCatalog) -> HistoryRow:
    snapshot: RouteSnapshot | None = catalog.by_id(log.route_id) if log.route_id else None
    if snapshot is not None:
        return HistoryRow(log, snapshot.slug, snapshot.name, snapshot.is_emergency)
    if log.route is not None:  # a route deleted from the catalog since: the row's own relation
        return HistoryRow(log, log.route.slug, log.route.name, log.route.is_emergency)
    return HistoryRow(log, "", "", False)


def _history_state(log: RequestLog) -> dict[str, Any]:
    """What the console's history needs to offer feedback, escalation and the alert's real
    state on items loaded with the page (the alerts are the list's prefetch: no query)."""
    return {
        "id": str(log.pk),
        "status": log.status,
        "escalated": log.escalated,
        "helpful": log.feedback_helpful,
        "alerts": [alert_payload(alert) for alert in log.alerts.all()],
    }


def _distinct_locations(locations: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for location in locations:
        seen.setdefault(location.casefold(), location)
    return list(seen.values())[:LOCATION_SUGGESTIONS]


@require_GET
@login_required
@ensure_csrf_cookie
def console(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.is_authenticated:  # login_required has sent anonymous people away already
        raise PermissionDenied
    catalog = route_catalog_get()
    # The selector lets staff see everyone's requests; the console lists the person's own.
    own = request_logs_visible_to(user).filter(user=user)
    history = list(own.order_by("-created_at")[:HISTORY_SIZE])
    locations = _distinct_locations(
        list(own.exclude(location="").values_list("location", flat=True)[:LOCATION_SCAN])
    )
    routes = catalog.enabled
    context: dict[str, Any] = {
        "routes": routes,
        "routes_meta": [
            {"slug": r.slug, "name": r.name, "emergency": r.is_emergency} for r in routes
        ],
        "history": [_history_row(log, catalog) for log in history],
        "history_state": [_history_state(log) for log in history],
        "history_size": HISTORY_SIZE,
        # Suggestions only: the field starts empty, so no request silently carries the
        # location of an earlier one (from any channel).
        "locations": locations,
        # The venue's clock (DJANGO_TIME_ZONE): "Manager alerted on Slack at 14:02".
        "time_zone": settings.TIME_ZONE,
        "text_max": TEXT_MAX_CHARS,
        "location_max": LOCATION_MAX_CHARS,
        "comment_max": COMMENT_MAX_CHARS,
        "csrf_cookie_name": settings.CSRF_COOKIE_NAME,
    }
    return render(request, "console/console.html", context)
