"""A per-process circuit breaker per backend.

When the upstream is down, every request would otherwise wait out its whole deadline.
After ``threshold`` consecutive failures the circuit opens and calls fail at once; after a
cooldown one trial call is let through (half-open) and its outcome decides. The first cooldown
is short (``first_cooldown_s``), so a blip of a few seconds is over for the desk a few seconds
after the upstream heals; each failed trial makes the next wait ``BACKOFF`` times longer, up
to ``cooldown_s``, so a long outage costs the upstream one trial call per cooldown.

The circuit always closes again: a trial that ends with no verdict on the model (cancelled,
its client gone, refused before it was sent) lets the next request try
(``record_no_verdict``), and a trial nobody reports on at all (a path that forgot to, a
generator dropped without being closed) holds the circuit for one more cooldown at most.
"""

import threading
import time
from dataclasses import dataclass, field

from django.conf import settings

# How much longer each cooldown is than the last while trials keep failing.
BACKOFF = 1.5


@dataclass
class CircuitBreaker:
    threshold: int = 5
    cooldown_s: float = 20.0  # the longest wait between trials
    first_cooldown_s: float = 1.0
    _failures: int = 0
    _opened_at: float | None = None
    _wait_s: float = 0.0  # the current cooldown
    _trial_started: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow(self) -> bool:
        """May a call go upstream now?"""
        with self._lock:
            if self._opened_at is None:
                return True
            now = time.monotonic()
            if now - self._opened_at < self._wait_s:
                return False
            # One trial at a time; one never reported on expires after the longest cooldown
            # (a trial may legitimately take the assistant's whole deadline).
            if self._trial_started is not None and now - self._trial_started < self.cooldown_s:
                return False
            self._trial_started = now
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._wait_s = 0.0
            self._trial_started = None

    def record_failure(self, *, sent_at: float | None = None) -> None:
        """The call let through at ``sent_at`` (``time.monotonic()``; None: the trial, if one
        is in flight) failed."""
        with self._lock:
            self._failures += 1
            if self._opened_at is None:
                if self._failures >= self.threshold:
                    self._wait_s = min(self.first_cooldown_s, self.cooldown_s)
                    self._opened_at = time.monotonic()
            elif self._is_trial(sent_at):
                # The trial failed: wait longer before the next. A call sent before the circuit
                # opened (many are in flight under load when it does) says nothing new, and
                # must not push the next trial back.
                self._wait_s = min(self._wait_s * BACKOFF, self.cooldown_s)
                self._opened_at = time.monotonic()
                self._trial_started = None

    def record_no_verdict(self, *, sent_at: float | None = None) -> None:
        """A call that says nothing about the upstream's health (cancelled, the person gone,
        a request the model refused): if it was the trial, the next request tries again."""
        with self._lock:
            if self._is_trial(sent_at):
                self._trial_started = None

    def _is_trial(self, sent_at: float | None) -> bool:
        # While the circuit is open only the trial is let through, so a call sent since the
        # trial started is the trial; one sent earlier is a straggler (or a lost trial).
        started = self._trial_started
        return started is not None and (sent_at is None or sent_at >= started)

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
                first_cooldown_s=settings.ASSISTANT_BREAKER_FIRST_COOLDOWN_S,
            )
        return breaker


def breakers_all() -> dict[str, CircuitBreaker]:
    """This process's breakers by backend (the metrics read their state at scrape time)."""
    with _breakers_lock:
        return dict(_breakers)


def breakers_reset() -> None:
    with _breakers_lock:
        _breakers.clear()
