"""Shared reads through the cache that survive a cache outage.

A ``SharedSnapshot`` is a value built from the database (the config, the route catalog),
shared between processes through the cache and held by each process. The request path
reads it many times a second; most reads cost nothing at all:

* for ``LOCAL_FRESH_S`` after a check, the process uses its own copy (no round trip);
* then one small cache read compares the process's copy with the current *stamp*;
* only when the stamp has moved is the value read from the cache (or rebuilt from the
  database and shared).

A write calls ``invalidate()``: a new stamp and the shared value dropped, so every process
rebuilds within ``LOCAL_FRESH_S`` and the writing process at once. A cache outage is never
an error: the value is built from the database, at most once per ``LOCAL_FRESH_S``.
"""

import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from django.core.cache import cache

from config.threads import in_thread

logger = logging.getLogger(__name__)

# How stale another process's edit may look: the admin's change reaches every worker
# within this long, and a warm worker makes at most one stamp read per this interval.
LOCAL_FRESH_S = 1.0


@dataclass(frozen=True, slots=True)
class _Held[T]:
    value: T
    stamp: str | None  # None: built while the cache was unavailable
    checked: float


class SharedSnapshot[T]:
    """A database-built value of type ``kind``, cached in the shared cache and in-process."""

    _instances: "weakref.WeakSet[SharedSnapshot[object]]" = weakref.WeakSet()

    def __init__(self, key: str, ttl_s: int, build: Callable[[], T], kind: type[T]) -> None:
        self.key = key
        self.stamp_key = f"{key}:stamp"
        self.ttl_s = ttl_s
        self.build = build
        self.kind = kind
        self._held: _Held[T] | None = None
        self._lock = threading.Lock()
        SharedSnapshot._instances.add(self)  # type: ignore[arg-type]

    def get(self) -> T:
        held = self._held
        now = time.monotonic()
        if held is not None and now - held.checked < LOCAL_FRESH_S:
            return held.value
        try:
            stamp = cache.get(self.stamp_key)
        except Exception:
            logger.warning("cache unavailable; building %s from the database", self.key)
            return self._keep(self.build(), None, now)
        if held is not None and stamp is not None and stamp == held.stamp:
            self._held = _Held(held.value, stamp, now)
            return held.value
        return self._refresh(stamp, now)

    async def aget(self) -> T:
        """``get`` for the event loop: this process's copy while it is fresh, otherwise the
        check (a cache read, perhaps a rebuild from the database) in a thread."""
        held = self._held
        if held is not None and time.monotonic() - held.checked < LOCAL_FRESH_S:
            return held.value
        return await in_thread(self.get)

    def _refresh(self, stamp: object, now: float) -> T:
        # One thread per process rebuilds; the others wait for its result.
        with self._lock:
            held = self._held
            if held is not None and held.checked >= now and stamp == held.stamp:
                return held.value
            try:
                shared = cache.get(self.key)
                if (
                    isinstance(shared, tuple)
                    and len(shared) == 2
                    and isinstance(shared[1], self.kind)
                    and shared[0] == stamp
                ):
                    return self._keep(shared[1], shared[0], now)
                if not isinstance(stamp, str):
                    stamp = uuid.uuid4().hex
                    if not cache.add(self.stamp_key, stamp, None):
                        stamp = cache.get(self.stamp_key)
                value = self.build()
                if isinstance(stamp, str):
                    cache.set(self.key, (stamp, value), self.ttl_s)
                return self._keep(value, stamp if isinstance(stamp, str) else None, now)
            except Exception:
                logger.warning("cache unavailable; building %s from the database", self.key)
                return self._keep(self.build(), None, now)

    def _keep(self, value: T, stamp: str | None, now: float) -> T:
        self._held = _Held(value, stamp, now)
        return value

    def invalidate(self) -> None:
        """After a write: every process rebuilds (this one on its next read)."""
        self._held = None
        try:
            cache.set(self.stamp_key, uuid.uuid4().hex, None)
            cache.delete(self.key)
        except Exception:
            # With the cache down there is nothing shared to go stale: readers use the
            # database, and other processes within LOCAL_FRESH_S.
            logger.warning("cache unavailable; could not invalidate %s", self.key, exc_info=True)

    def forget(self) -> None:
        """Drop this process's copy only (tests; a cache flushed from outside)."""
        self._held = None

    @classmethod
    def forget_all(cls) -> None:
        for snapshot in list(cls._instances):
            snapshot.forget()
