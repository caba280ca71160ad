"""The health check: is the database there, is the cache there."""

import asyncio
import functools
import importlib.metadata
import logging
import tomllib
import uuid

from adrf.views import APIView as AsyncAPIView
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from config.db_async import db_async_execute, db_async_pool
from config.threads import db_connection_release

logger = logging.getLogger(__name__)

HEALTH_CACHE_TTL_S = 10


@functools.cache
def clubos_version() -> str:
    """The installed package's version, else pyproject's (a source checkout is not installed)."""
    try:
        return importlib.metadata.version("clubos")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        with open(settings.BASE_DIR / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


# A monitor's verdict within a second: each check that takes longer has failed.
HEALTH_CHECK_TIMEOUT_S = 0.6


def _database_ok_sync() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    finally:
        db_connection_release()


async def _database_ok() -> bool:
    """``SELECT 1`` on the event loop's own pool (the request log's), else from a thread of
    its own: a check stuck on a dead connection must not hold the thread other requests'
    synchronous work runs in."""
    pool = db_async_pool()
    try:
        if pool is not None:
            return (
                await db_async_execute(pool, "SELECT 1", (), timeout_s=HEALTH_CHECK_TIMEOUT_S) == 1
            )
        check = sync_to_async(_database_ok_sync, thread_sensitive=False)()
        return await asyncio.wait_for(check, HEALTH_CHECK_TIMEOUT_S)
    except Exception as exc:
        # One line, not a traceback: a monitor probing every few seconds through an outage
        # would otherwise bury the log.
        logger.warning("health: database check failed: %s: %s", type(exc).__name__, exc)
        return False


def _cache_ok_sync() -> bool:
    # A key of our own, so concurrent checks never read each other's value. The Redis
    # socket timeouts in settings bound how long this can take when Redis is down.
    key = f"health:{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    try:
        cache.set(key, token, HEALTH_CACHE_TTL_S)
        ok = cache.get(key) == token
        cache.delete(key)
        return ok
    except Exception as exc:
        # One line, not a traceback: a monitor probing every few seconds through an outage
        # would otherwise bury the log.
        logger.warning("health: cache check failed: %s: %s", type(exc).__name__, exc)
        return False


async def _cache_ok() -> bool:
    try:
        async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_S):
            return await sync_to_async(_cache_ok_sync, thread_sensitive=False)()
    except TimeoutError:
        logger.warning("health: cache check timed out")
        return False


HealthSerializer = inline_serializer(
    name="Health",
    fields={
        "status": serializers.CharField(help_text="`ok`, or `error` when any part failed."),
        "database": serializers.CharField(help_text="`ok` or `error`."),
        "cache": serializers.CharField(help_text="`ok` or `error`."),
        "version": serializers.CharField(),
    },
)


class HealthApi(AsyncAPIView):
    """Liveness for load balancers and monitors: no login, no secrets in the answer; within
    a second whatever the database and the cache are doing (both checked at once, each
    bounded by ``HEALTH_CHECK_TIMEOUT_S``)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="health",
        summary="Health of the database and the cache",
        auth=[],
        responses={
            200: OpenApiResponse(HealthSerializer, description="Everything works."),
            503: OpenApiResponse(HealthSerializer, description="The database or the cache failed."),
        },
    )
    async def get(self, request: Request) -> Response:
        database, cache_ = await asyncio.gather(_database_ok(), _cache_ok())
        parts = {"database": "ok" if database else "error", "cache": "ok" if cache_ else "error"}
        healthy = all(value == "ok" for value in parts.values())
        body = {"status": "ok" if healthy else "error", **parts, "version": clubos_version()}
        return Response(
            body, status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE
        )
