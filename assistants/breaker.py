"""A per-process circuit breaker per backend.

When the upstream is down, every request would otherwise wait out its whole deadline.
After ``threshold`` consecutive failures the circuit opens and calls fail at once for
``cooldown_s``; then one trial call is let through (half-open) and its outcome decides.

The circuit always closes again: a trial that ends with no verdict on the model (cancelled,
its client gone, refused before it was sent) lets the next request try
(``record_no_verdict``), and a trial nobody reports on at all (a path that forgot to, a
generator dropped without being closed) holds the circuit for one more cooldown at most.
"""

import threading
import time
from dataclasses import dataclass, field

from django.conf import settings


@dataclass
class CircuitBreaker:
    threshold: int = 5
    cooldown_s: float = 20.0
    _failures: int = 0
    _opened_at: float | None = None
    _trial_started: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow(self) -> bool:
        """May a call go upstream now?"""
        with self._lock:
            if self._opened_at is None:
                return True
            now = time.monotonic()
            if now - self._opened_at < self.cooldown_s:
                return False
            if self._trial_started is not None and now - self._trial_started < self.cooldown_s:
                return False  # one trial at a time; one never reported on expires
            self._trial_started = now
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_started = None

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_started = None
            if self._failures >= self.threshold or self._opened_at is not None:
                self._opened_at = time.monotonic()

    def record_no_verdict(self) -> None:
        """A call that says nothing about the upstream's health (cancelled, the person gone,
        a request the model refused): a trial call in flight is over, and the next request
        tries again."""
        with self._lock:
            self._trial_started = None

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success."""
        with self._lock:
            return self._failures


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(backend_name: str) -> CircuitBreaker:
    with _breakers_lock:
        breaker = _breakers.get(backend_name)
        if breaker is None:
            breaker = _breakers[backend_name] = CircuitBreaker(
                threshold=settings.ASSISTANT_BREAKER_THRESHOLD,
                cooldown_s=settings.ASSISTANT_BREAKER_COOLDOWN_S,
            )
        return breaker


def breakers_all() -> dict[str, CircuitBreaker]:
    """This process's breakers by backend (the metrics read their state at scrape time)."""
    with _breakers_lock:
        return dict(_breakers)


def breakers_reset() -> None:
    with _breakers_lock:
        _breakers.clear()
