"""API token authentication that does not cost a database query on every request.

DRF's own ``TokenAuthentication`` decides everything (the header's format, the key, the
user, ``is_active``, the 401s); this class only remembers the answer for a valid token for
``API_TOKEN_CACHE_S`` seconds, in this process. A wrong or revoked key always reaches the
database. Deleting a token or changing its user (deactivated, demoted) drops the remembered
answer in this process at once (``accounts.apps``); other processes re-check it within
``API_TOKEN_CACHE_S`` (1 s by default).
"""

import copy
import threading
import time
from typing import Any

from django.conf import settings
from rest_framework.authentication import TokenAuthentication

# Bounds the memory a flood of distinct (valid) tokens can take; far above real use.
_MAX_TOKENS = 10_000


class _TokenCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, Any, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[Any, Any] | None:
        entry = self._entries.get(key)
        if entry is None or entry[2] <= time.monotonic():
            return None
        return entry[0], entry[1]

    def put(self, key: str, user: Any, token: Any, ttl_s: float) -> None:
        with self._lock:
            if len(self._entries) >= _MAX_TOKENS:
                self._entries.clear()
            self._entries[key] = (user, token, time.monotonic() + ttl_s)

    def forget(self, *, key: str | None = None, user_id: int | None = None) -> None:
        """Drop one token's entry, or every entry of one user."""
        with self._lock:
            if key is not None:
                self._entries.pop(key, None)
            if user_id is not None:
                for k in [k for k, e in self._entries.items() if e[0].pk == user_id]:
                    del self._entries[k]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


api_token_cache = _TokenCache()


def api_token_forget_token(*, instance: Any, **kwargs: Any) -> None:
    """A token deleted (``post_delete``): this process stops trusting it at once."""
    api_token_cache.forget(key=instance.key)


def api_token_forget_user(*, instance: Any, **kwargs: Any) -> None:
    """A user saved or deleted (deactivated, demoted): their tokens are checked again."""
    api_token_cache.forget(user_id=instance.pk)


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's ``Authorization: Token <key>``, remembering each valid token for a short while.

    A kiosk or script sends the same token with every request; looking it up each time was
    one of the three database queries of every request.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        ttl_s = settings.API_TOKEN_CACHE_S
        if ttl_s <= 0:
            return super().authenticate_credentials(key)
        hit = api_token_cache.get(key)
        if hit is None:
            user, token = super().authenticate_credentials(key)
            api_token_cache.put(key, user, token, ttl_s)
            hit = user, token
        # Each request gets its own user object: views may cache things on it.
        return copy.copy(hit[0]), hit[1]
