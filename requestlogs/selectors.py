"""Reads of the request log: the public request object, lists and timing statistics."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from requestlogs.models import Alert, RequestLog
from routing.selectors import RouteCatalog, RouteSnapshot, route_catalog_get


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _moment(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def alert_payload(alert: Alert) -> dict[str, Any]:
    """One of a request's Slack alerts, as the API shows it."""
    return {
        "kind": alert.kind,
        "state": alert.state,
        "tries": alert.tries,
        "queued_at": _moment(alert.queued_at),
        "sent_at": _moment(alert.sent_at),
        "last_error": alert.last_error,
    }


def request_alerts(log: RequestLog) -> list[Alert]:
    """The request's alerts as they are now (a prefetched list may predate a new one)."""
    return list(Alert.objects.filter(request=log).order_by("queued_at", "pk"))


def request_log_payload(
    log: RequestLog,
    *,
    catalog: RouteCatalog | None = None,
    alerts: Iterable[Alert] | None = None,
) -> dict[str, Any]:
    """The request object of the public API (DESIGN.md).

    Route name and slug come from the cached catalog, so serialising a fresh result
    costs nothing; a route deleted since falls back to the row's own relation. ``alerts``:
    the request's alerts when the caller knows them (a submit, a list's prefetch); else
    they are read (one query).
    """
    route: dict[str, str] | None = None
    if log.route_id is not None:
        snapshot = (catalog or route_catalog_get()).by_id(log.route_id)
        if snapshot is not None:
            route = {"slug": snapshot.slug, "name": snapshot.name}
        elif log.route is not None:
            route = {"slug": log.route.slug, "name": log.route.name}
    return {
        "id": str(log.pk),
        "status": log.status,
        "route": route,
        "routing": {
            "source": log.routing_source or None,
            "confidence": None if log.confidence is None else round(log.confidence, 3),
            "possible_emergency": log.possible_emergency,
        },
        "answer": log.answer,
        "cached": log.cached,
        "escalated": log.escalated,
        "timings_ms": {
            "routing": _ms(log.routing_ms),
            "ttft": _ms(log.ttft_ms),
            "assistant": _ms(log.assistant_ms),
            "total": _ms(log.total_ms),
        },
        "created_at": log.created_at.isoformat().replace("+00:00", "Z"),
        "alerts": [alert_payload(a) for a in (log.alerts.all() if alerts is None else alerts)],
    }


def suggested_route_payload(suggested: RouteSnapshot | None) -> dict[str, str | None]:
    """A submit's answer only (route, done and error events, the JSON 201): the route the
    classifier strongly prefers over the one the person chose, or null. Not stored."""
    return {"suggested_route": None if suggested is None else suggested.slug}


def request_logs_visible_to(user: User | AnonymousUser) -> QuerySet[RequestLog]:
    """Staff see every request; everyone else only their own."""
    qs = RequestLog.objects.select_related("route", "user").prefetch_related("alerts")
    if getattr(user, "is_staff", False):
        return qs
    if not user.is_authenticated:
        return qs.none()
    return qs.filter(user=user)
