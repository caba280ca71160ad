"""Reads of the request log: the public request object, lists and timing statistics."""

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from requestlogs.models import RequestLog
from routing.selectors import RouteCatalog, route_catalog_get


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def request_log_payload(log: RequestLog, *, catalog: RouteCatalog | None = None) -> dict[str, Any]:
    """The request object of the public API (DESIGN.md), without a database query.

    Route name and slug come from the cached catalog, so serialising a fresh result
    costs nothing; a route deleted since falls back to the row's own relation.
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
    }


def request_logs_visible_to(user: User | AnonymousUser) -> QuerySet[RequestLog]:
    """Staff see every request; everyone else only their own."""
    qs = RequestLog.objects.select_related("route", "user")
    if getattr(user, "is_staff", False):
        return qs
    if not user.is_authenticated:
        return qs.none()
    return qs.filter(user=user)
