"""Monitoring: the Prometheus endpoint, each request's JSON log line, and keeping a worker's
state gauges fresh under gunicorn.

* ``GET /metrics`` serves every metric (``config.metrics``) to a scraper that passes the
  configured checks: ``METRICS_BEARER_TOKEN`` (``Authorization: Bearer <token>``) and/or
  ``METRICS_ALLOWED_IPS`` (the client address by the throttles' rule, ``TRUSTED_PROXY_COUNT``).
  With neither set it does not exist (404); ``DJANGO_DEBUG=1`` allows loopback by default.
* Each request ends with one JSON line on the ``clubos.requests`` logger
  (``request_line_log``, called when Django closes the response: after the last byte of a
  stream, or when its client left).
"""

import asyncio
import hmac
import ipaddress
import logging
import time
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from config.metrics import metrics_exposition, metrics_multiprocess, metrics_state_read
from config.request_context import RequestContext
from config.threads import in_thread
from config.throttling import client_address

logger = logging.getLogger(__name__)
request_logger = logging.getLogger("clubos.requests")

# --- The endpoint -------------------------------------------------------------------------


def metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """None if the scraper may read the metrics; else the answer it gets. Every configured
    check must pass; with none configured the endpoint is off (404)."""
    token: str = settings.METRICS_BEARER_TOKEN
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = settings.METRICS_ALLOWED_IPS
    if not token and not networks:
        raise Http404("Metrics are off: set METRICS_BEARER_TOKEN or METRICS_ALLOWED_IPS.")
    if networks and not _address_allowed(client_address(request), networks):
        return HttpResponse(
            "Metrics are not served to this address.\n", status=403, content_type="text/plain"
        )
    if token:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credentials.strip().encode(), token.encode()
        ):
            response = HttpResponse(
                "Metrics need the bearer token.\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return None


def _address_allowed(
    address: str | None, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format. Read and rendered in the request's thread, not on the loop
    (in multiprocess mode it reads every worker's files)."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    body, content_type = await in_thread(metrics_exposition)
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


# --- Keeping the state gauges fresh under gunicorn -----------------------------------------

_refreshing: set[asyncio.Task[None]] = set()


def metrics_refresh_start() -> None:
    """Multiprocess only, at a worker's start (ASGI lifespan): read this worker's state (pools,
    breakers, CPU and memory) every ``METRICS_REFRESH_S``, since a scrape answered by
    another worker only sees what this one last wrote."""
    if not metrics_multiprocess():
        return
    task = asyncio.get_running_loop().create_task(_refresh_forever(), name="metrics-refresh")
    _refreshing.add(task)
    task.add_done_callback(_refreshing.discard)


async def metrics_refresh_stop() -> None:
    for task in list(_refreshing):
        task.cancel()
    await asyncio.gather(*_refreshing, return_exceptions=True)


async def _refresh_forever() -> None:
    while True:
        try:
            metrics_state_read()
        except Exception:
            logger.warning("could not read this worker's state for the metrics", exc_info=True)
        await asyncio.sleep(settings.METRICS_REFRESH_S)


# --- The request's log line ---------------------------------------------------------------


def request_line_log(request: HttpRequest, context: RequestContext, status: int) -> None:
    """One JSON line for the request: who, what, how it ended and how long it took. Never
    the request's text, its answer or any credential."""
    if not request_logger.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "request_id": str(context.id),
        "method": request.method,
        "path": request.path,
        "status": status,
        "duration_ms": round((time.perf_counter() - context.started) * 1000, 3),
        "user_id": _user_id(request),
        "client": client_address(request),
    }
    if context.outcome is not None:
        fields.update(context.outcome)
    request_logger.info("request", extra=fields)


def _user_id(request: HttpRequest) -> int | None:
    """The user the request was made as, if anything asked: a session or token never looked
    at is not loaded for the log line (that would be a query)."""
    user = request.__dict__.get("user")
    if user is None or (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
        return None
    return user.pk if user.is_authenticated else None
