"""API token authentication that does not cost a database query on every request."""

import copy
import threading
import time
from typing import Any

from django.conf import settings
from rest_framework.authentication import TokenAuthentication

# Bounds the memory a flood of distinct (valid) tokens can take; far above real use.
_MAX_TOKENS = 10_000


def refresh_ahead_s() -> float:
    """How long before a remembered token runs out it is re-checked: the event loop's lane
    (``api_token_user_known``) only takes a token trusted for that long still, so the
    view's re-check must come first, or every request of the token's last second would
    take the thread's way. A quarter of a short cache time."""
    return min(1.0, settings.API_TOKEN_CACHE_S / 4)


class _TokenCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, Any, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, *, fresh_for_s: float = 0.0) -> tuple[Any, Any] | None:
        entry = self._entries.get(key)
        if entry is None or entry[2] <= time.monotonic() + fresh_for_s:
            return None
        return entry[0], entry[1]

    def put(self, key: str, user: Any, token: Any, ttl_s: float) -> None:
        with self._lock:
            if len(self._entries) >= _MAX_TOKENS:
                self._entries.clear()
            self._entries[key] = (user, token, time.monotonic() + ttl_s)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


api_token_cache = _TokenCache()


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's ``Authorization: Token <key>``, remembering each valid token in this process.

    A kiosk or script sends the same token with every request; looking it up each time was
    one of the three database queries of every request. A token is re-checked against the
    database after ``API_TOKEN_CACHE_S`` seconds, so a deleted token or a deactivated user
    is refused by every worker within that time. Only valid tokens are remembered: a wrong
    or revoked key always reaches the database and gets DRF's 401.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        ttl_s = settings.API_TOKEN_CACHE_S
        if ttl_s <= 0:
            return super().authenticate_credentials(key)
        hit = api_token_cache.get(key, fresh_for_s=refresh_ahead_s())
        if hit is None:
            user, token = super().authenticate_credentials(key)
            api_token_cache.put(key, user, token, ttl_s)
            hit = user, token
        # Each request gets its own user object: views may cache things on it.
        return copy.copy(hit[0]), hit[1]


def api_token_user_known(authorization: bytes) -> Any | None:
    """The user of an ``Authorization: Token <key>`` header's token, if this worker has
    checked that token and will trust it for ``refresh_ahead_s()`` more: no database. None for
    anything else (no token, a malformed header, a token not checked yet or about to be
    re-checked), which ``CachedTokenAuthentication`` then deals with.
    """
    auth = authorization.split()
    if len(auth) != 2 or auth[0].lower() != CachedTokenAuthentication.keyword.lower().encode():
        return None
    try:
        key = auth[1].decode()
    except UnicodeError:
        return None
    hit = api_token_cache.get(key, fresh_for_s=refresh_ahead_s())
    return None if hit is None else copy.copy(hit[0])
