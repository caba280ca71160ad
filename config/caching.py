"""Shared reads through the cache that survive a cache outage."""

import logging
from collections.abc import Callable

from django.core.cache import cache

logger = logging.getLogger(__name__)


def cached_or_build[T](key: str, ttl_s: int, build: Callable[[], T], kind: type[T]) -> T:
    """The cached value of ``kind`` under ``key``, else ``build()`` (cached for ``ttl_s``).

    A cache outage is never an error here: the value is built from the database and the
    request goes on.
    """
    try:
        cached = cache.get(key)
    except Exception:
        logger.warning("cache unavailable; building %s from the database", key, exc_info=True)
        return build()
    if isinstance(cached, kind):
        return cached
    value = build()
    try:
        cache.set(key, value, ttl_s)
    except Exception:
        logger.warning("cache unavailable; not caching %s", key, exc_info=True)
    return value
