"""Throttles: DRF's ``SimpleRateThrottle``, with its rate from the admin's System configuration
(else the server's ``DEFAULT_THROTTLE_RATES``) and an atomic count in the shared cache.

* **The rate** is read from the cached config snapshot (``system_config_get``): on the warm
  path that is this process's copy, no database query. An admin's change applies on every
  worker within ``config.caching.LOCAL_FRESH_S``.
* **The count** is an ``incr`` of a per-window key in the default cache (Redis when
  ``REDIS_URL`` is set, so every worker and instance shares it), then a read of the previous
  window's count: a sliding window, the previous window weighted by how much of it still
  lies within the last ``duration`` (no double burst where two fixed windows meet). DRF's own
  step reads a history list and writes it back, so requests that arrive together all read the
  same history: of 20 guesses at one password sent at once through nginx, 6 were tried
  against a limit of 5 (tests/clubos/test_reverse_proxy.py); an ``incr`` is atomic. A refused request is
  not counted, so a client that waits ``Retry-After`` gets in.
* **A cache outage fails open**: the request is served and a warning logged (once per
  ``CACHE_RETRY_S`` per process, which is also how long the cache is left alone).
* **The client address** is DRF's ``get_ident``: ``REMOTE_ADDR`` unless
  ``NUM_PROXIES`` (``TRUSTED_PROXY_COUNT``) says how many proxies' ``X-Forwarded-For``
  entries to believe. Axes uses the same function (``client_address``).
"""

import contextlib
import hashlib
import logging
import time
from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from config.selectors import system_config_get

logger = logging.getLogger(__name__)

# After a cache error, throttles let requests through without trying the cache for this long:
# during an outage a request must not pay the cache's connect timeout on every call.
CACHE_RETRY_S = 5.0
_cache_down_until = 0.0


def client_address(request: HttpRequest | Request) -> str | None:
    """The client's address, by the one rule every throttle and Axes use (DRF's
    ``get_ident`` with ``NUM_PROXIES``)."""
    return BaseThrottle().get_ident(request)  # type: ignore[arg-type]


def throttled_message(wait: float | None) -> str:
    if wait is None:
        return "Too many requests: try again later."
    return f"Too many requests: try again in {max(1, round(wait))} s."


class ConfiguredRateThrottle(SimpleRateThrottle):
    """A ``SimpleRateThrottle`` whose rate is the config's ``config_field`` (if set) or
    ``DEFAULT_THROTTLE_RATES[scope]``; an empty rate throttles nothing."""

    scope: str = ""
    config_field: str = ""
    # Set by SimpleRateThrottle.__init__ from the rate (None when there is none).
    num_requests: int | None
    duration: int | None
    wait_s: float | None = None

    def get_rate(self) -> str | None:
        configured: str = getattr(system_config_get(), self.config_field, "")
        default = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        return configured or (str(default) if default else None)

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.num_requests is None or self.duration is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        duration, limit = self.duration, self.num_requests
        window = int(self.now // duration)
        elapsed = self.now - window * duration
        key = f"{self.key}:{window}"
        counts = self._counts(key, f"{self.key}:{window - 1}", duration)
        if counts is None:
            return True
        current, previous = counts  # current includes this request
        if previous * (1 - elapsed / duration) + current <= limit:
            return True
        self._uncount(key)
        self.wait_s = _wait_s(current - 1, previous, elapsed, duration, limit)
        return False

    def wait(self) -> float | None:
        return self.wait_s

    def _counts(self, key: str, previous_key: str, duration: int) -> tuple[int, int] | None:
        """This window's count with this request, and the previous window's; None when the
        cache is unavailable."""
        global _cache_down_until
        if time.monotonic() < _cache_down_until:
            return None
        try:
            try:
                current = int(self.cache.incr(key))
            except ValueError:  # the window's first request: no key yet
                # Kept for two windows: in the next one it is the previous window's count.
                current = 1 if self.cache.add(key, 1, 2 * duration + 1) else self.cache.incr(key)
            return current, int(self.cache.get(previous_key) or 0)
        except Exception as exc:
            _cache_down_until = time.monotonic() + CACHE_RETRY_S
            logger.warning(
                "throttle %s not applied for %.0f s: cache unavailable (%s: %s)",
                self.scope,
                CACHE_RETRY_S,
                type(exc).__name__,
                exc,
            )
            return None

    def _uncount(self, key: str) -> None:
        # Should the cache fail here, the count is one high until the window ends.
        with contextlib.suppress(Exception):
            self.cache.decr(key)


def _wait_s(admitted: int, previous: int, elapsed: float, duration: int, limit: int) -> float:
    """Seconds until one more request fits the sliding window."""
    if admitted < limit and previous > 0:
        # In this window, once enough of the previous one has slid out.
        return max(1.0, duration * (1 - (limit - admitted - 1) / previous) - elapsed)
    # In the next window, once enough of this one (then the previous) has slid out.
    fade = duration * (1 - (limit - 1) / admitted) if admitted > 0 else 0.0
    return max(1.0, duration - elapsed + fade)


class SubmitRateThrottle(ConfiguredRateThrottle):
    """Submits per user (only ``POST`` counts: reading the list is not a model call)."""

    scope = "submit"
    config_field = "throttle_submit_rate"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.method != "POST" or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class TokenAddressRateThrottle(ConfiguredRateThrottle):
    """Token requests per client address."""

    scope = "token_address"
    config_field = "throttle_token_address_rate"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.method != "POST":
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def _username(request: Request) -> str | None:
    data = request.data
    username = data.get("username") if hasattr(data, "get") else None
    if not isinstance(username, str) or not username.strip() or "\x00" in username:
        # No account's name holds a NUL (PostgreSQL's text cannot store one): such a request
        # is counted by its address alone, and the serializer refuses it with a 400.
        return None
    return username.strip()


class TokenUsernameRateThrottle(ConfiguredRateThrottle):
    """Token requests per username, from any address: guessing one account's password from
    many addresses is still limited."""

    scope = "token_username"
    config_field = "throttle_token_username_rate"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.method != "POST":
            return None
        username = _username(request)
        if username is None:
            return None  # nothing to guess; the address throttle still counts it
        # Hashed: a cache key holds no username, and its length is bounded.
        ident = hashlib.sha256(username.casefold().encode()).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": ident}


class LoginLockoutThrottle(BaseThrottle):
    """A 429 while django-axes has locked out this username or address (its failure count, in
    the database, is shared with the admin login), rather than a 400 that reads like a wrong
    password."""

    wait_s: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method != "POST" or not getattr(settings, "AXES_ENABLED", True):
            return True
        from axes.handlers.proxy import AxesProxyHandler
        from axes.helpers import get_cool_off

        if not AxesProxyHandler.is_locked(request, {"username": _username(request)}):
            return True
        cool_off = get_cool_off(request)
        self.wait_s = cool_off.total_seconds() if cool_off is not None else None
        return False

    def wait(self) -> float | None:
        return self.wait_s


class LoginLockoutBackend(AxesStandaloneBackend):
    """Axes' lockout check, first in ``AUTHENTICATION_BACKENDS``. A call to ``authenticate``
    with no request (a management command, the test client's ``login``) is no HTTP login
    attempt and has no address to count: it is passed on to the next backend, where Axes'
    own backend would refuse it."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def login_lockout_response(
    request: HttpRequest, original_response: object = None, credentials: object = None
) -> HttpResponse:
    """What a locked-out login gets (``AXES_LOCKOUT_CALLABLE``): 429, Retry-After, and how
    to get back in."""
    from axes.helpers import get_cool_off

    cool_off = get_cool_off(request)
    if cool_off is None:
        response = HttpResponse(
            "Too many failed logins for this account or address. Ask an admin to unlock it.",
            status=429,
            content_type="text/plain; charset=utf-8",
        )
        return response
    seconds = max(1, round(cool_off.total_seconds()))
    response = HttpResponse(
        f"Too many failed logins for this account or address: try again in {seconds} s, "
        "or ask an admin to unlock it.",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(seconds)
    return response
