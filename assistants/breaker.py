"""A per-process circuit breaker per backend.

When the upstream is down, every request would otherwise wait out its whole deadline.
After ``threshold`` consecutive failures the circuit opens and calls fail at once for
``cooldown_s``; then one trial call is let through (half-open) and its outcome decides.
"""

import threading
import time
from dataclasses import dataclass, field


@dataclass
class CircuitBreaker:
    threshold: int = 5
    cooldown_s: float = 20.0
    _failures: int = 0
    _opened_at: float | None = None
    _trial_in_flight: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow(self) -> bool:
        """May a call go upstream now?"""
        with self._lock:
            if self._opened_at is None:
                return True
            if time.monotonic() - self._opened_at < self.cooldown_s or self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_in_flight = False
            if self._failures >= self.threshold or self._opened_at is not None:
                self._opened_at = time.monotonic()

    def record_no_verdict(self) -> None:
        """A call that says nothing about the upstream's health (cancelled, the person gone,
        a request the model refused): a trial call in flight is over, and the next request
        tries again."""
        with self._lock:
            self._trial_in_flight = False

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(backend_name: str) -> CircuitBreaker:
    with _breakers_lock:
        return _breakers.setdefault(backend_name, CircuitBreaker())


def breakers_reset() -> None:
    with _breakers_lock:
        _breakers.clear()
