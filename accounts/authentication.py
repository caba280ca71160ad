"""API token authentication: knox's hashed, expiring tokens, without a query per request.

The token is django-rest-knox's (``Authorization: Token <key>``; the database holds only its
SHA-512 digest and its expiry). Checking one costs one query (the token by its digest, with
its user). A kiosk sends the same token on every request, so each process remembers a
checked token, and trusts what it remembers only while nothing can have changed:

* **The shared auth version**: one key in the shared cache (Redis), given a new random value
  after every commit that deletes a token or changes or deletes a user (``accounts.apps``:
  whatever does it, a service, the admin or the shell). A process re-reads it at most every
  ``VERSION_FRESH_S`` (0.2 s); a remembered token is trusted only while the version is the
  one it was checked under, and for at most ``API_TOKEN_TRUST_S``. A revocation anywhere is
  thus seen by every worker within 0.2 s of its commit, and by the worker that made it at
  once (its own copy of the version moves with the change).
* **Without it** (the local-memory cache, so no other process can be told; or Redis
  unreachable): a remembered token is trusted for ``API_TOKEN_CACHE_S`` (1 s), then checked
  against the database again. A Redis outage is never an error, and a Redis that hangs is
  tried again only once per ``CACHE_RETRY_S``.

The expiry is checked on every request, remembered or not. A wrong, expired or revoked key,
or an inactive user, is a 401 from DRF's own machinery.
"""

import copy
import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction
from django.utils import timezone
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from rest_framework import exceptions

logger = logging.getLogger(__name__)

AUTH_VERSION_KEY = "accounts:auth-version"
# How long a process uses the shared version it last read: how late another worker's
# revocation may be seen after its commit; a warm worker reads Redis at most 5 times a second.
VERSION_FRESH_S = 0.2
# After the cache failed, how long before it is tried again.
CACHE_RETRY_S = 1.0
# Bounds the memory a flood of distinct (valid) tokens can take; far above real use.
_MAX_TOKENS = 10_000


@dataclass(frozen=True, slots=True)
class _Version:
    local: int  # this process's changes
    shared: str | None  # the shared auth version; None: unknown (no shared cache, or it is down)


@dataclass(frozen=True, slots=True)
class _Entry:
    user: Any
    token: AuthToken
    version: _Version
    checked: float


class _AuthVersion:
    """The auth version a remembered token is checked against (see the module's note)."""

    def __init__(self) -> None:
        self._local = itertools.count(1)
        self._current = _Version(0, None)
        self._read_at = float("-inf")
        self._retry_at = float("-inf")
        self._bump_pending = False
        self._lock = threading.Lock()

    def current(self, now: float) -> _Version:
        version = self._current
        if now - self._read_at < VERSION_FRESH_S:
            return version
        shared = self._read_shared(now)
        with self._lock:
            # Under the lock, so that a change made meanwhile in this process is kept.
            version = _Version(self._current.local, shared)
            self._current, self._read_at = version, now
        return version

    def _read_shared(self, now: float) -> str | None:
        cache = caches["default"]
        if isinstance(cache, LocMemCache | DummyCache) or now < self._retry_at:
            return None
        try:
            if self._bump_pending:
                # A change made while the cache was down: told to the others now.
                self._bump_pending = False
                value: object = uuid.uuid4().hex
                cache.set(AUTH_VERSION_KEY, value, None)
            else:
                value = cache.get(AUTH_VERSION_KEY)
            if not isinstance(value, str):
                # Never set, or lost with Redis's data: a fresh value, so that nothing
                # remembered under the old one is trusted.
                value = uuid.uuid4().hex
                if not cache.add(AUTH_VERSION_KEY, value, None):
                    value = cache.get(AUTH_VERSION_KEY)
        except Exception:
            logger.warning("cache unavailable; API tokens are checked every %ss", CACHE_RETRY_S)
            self._retry_at = now + CACHE_RETRY_S
            return None
        return value if isinstance(value, str) else None

    def bump(self) -> None:
        """A token deleted or a user changed: nothing remembered is trusted any more, in this
        process at once, in the others on their next read of the shared version."""
        shared: str | None = None
        cache = caches["default"]
        if not isinstance(cache, LocMemCache | DummyCache):
            shared = uuid.uuid4().hex
            try:
                cache.set(AUTH_VERSION_KEY, shared, None)
            except Exception:
                logger.warning("cache unavailable; the auth version moves when it is back")
                self._bump_pending = True
                shared = None
        with self._lock:
            self._current = _Version(next(self._local), shared)
            self._read_at = time.monotonic()

    def reset(self) -> None:
        with self._lock:
            self._current = _Version(next(self._local), None)
            self._read_at = self._retry_at = float("-inf")
            self._bump_pending = False


auth_version = _AuthVersion()


class _TokenCache:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> _Entry | None:
        return self._entries.get(digest)

    def put(self, digest: str, entry: _Entry) -> None:
        with self._lock:
            if len(self._entries) >= _MAX_TOKENS:
                self._entries.clear()
            self._entries[digest] = entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


api_token_cache = _TokenCache()


def _trusted(entry: _Entry, version: _Version, now: float) -> bool:
    if entry.version.local != version.local:
        return False
    age = now - entry.checked
    if version.shared is None:
        return age < settings.API_TOKEN_CACHE_S
    return entry.version.shared == version.shared and age < settings.API_TOKEN_TRUST_S


def _expired(token: AuthToken) -> bool:
    return token.expiry is not None and token.expiry <= timezone.now()


def api_token_changed() -> None:
    """Cache upkeep after a token was deleted or a user changed (``accounts.apps``): this
    process stops trusting what it remembers now, and every process once the change is
    committed (the others re-reading before the commit would find the old rows)."""
    auth_version.bump()
    transaction.on_commit(auth_version.bump, robust=True)


def api_token_forget_all() -> None:
    """Drop everything this process remembers (tests; a cache flushed from outside)."""
    api_token_cache.clear()
    auth_version.reset()


class CachedTokenAuthentication(TokenAuthentication):
    """knox's ``Authorization: Token <key>``, remembering each valid token while nothing
    that could revoke it has changed (see the module's note)."""

    def authenticate_credentials(self, token: bytes) -> tuple[AbstractBaseUser, AuthToken]:
        try:
            digest = hash_token(token.decode("ascii"))
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        if settings.API_TOKEN_CACHE_S <= 0:
            return self._checked(digest)
        now = time.monotonic()
        # The version is read before the database: a change committed after this read moves
        # the version again, so what is checked now is not trusted past it.
        version = auth_version.current(now)
        entry = api_token_cache.get(digest)
        if entry is None or not _trusted(entry, version, now) or _expired(entry.token):
            user, auth_token = self._checked(digest)
            entry = _Entry(user, auth_token, version, now)
            api_token_cache.put(digest, entry)
        # Each request gets its own user object: views may cache things on it.
        return copy.copy(entry.user), entry.token

    def _checked(self, digest: str) -> tuple[AbstractBaseUser, AuthToken]:
        """The token by its digest, with its user: one query."""
        auth_token = AuthToken.objects.select_related("user").filter(digest=digest).first()
        if auth_token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if _expired(auth_token):
            raise exceptions.AuthenticationFailed("Token expired: ask for a new one.")
        if not auth_token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return auth_token.user, auth_token
