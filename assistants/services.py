"""Getting a routed request answered: the one retry loop, the breaker and the response cache."""

import hashlib
import logging
import re
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass

from django.core.cache import cache

from assistants.backends import (
    AssistantError,
    AssistantRequest,
    Completion,
    FailureKind,
    StreamEvent,
    TextDelta,
    backend_name_for,
    get_backend,
)
from assistants.breaker import breaker_for
from config.selectors import ConfigSnapshot
from routing.selectors import RouteSnapshot

logger = logging.getLogger(__name__)

# A retry is only worth starting if it has a real chance to finish.
MIN_ATTEMPT_S = 0.5


@dataclass
class AssistantCall:
    """One routed request's trip to its backend, streamed by iterating it.

    Iterating yields ``TextDelta`` events and then one ``Completion``, or raises
    ``AssistantError`` once retries and the deadline are spent. Afterwards the
    attributes say what happened: how many upstream calls, which backend and model.
    """

    text: str
    location: str
    route: RouteSnapshot
    config: ConfigSnapshot
    backend_name: str = ""
    model: str = ""
    upstream_calls: int = 0
    cached: bool = False

    def __post_init__(self) -> None:
        self.backend_name = backend_name_for(self.route.backend)
        self.model = self.route.model or self.config.default_assistant_model

    @property
    def calls_upstream(self) -> bool:
        try:
            return get_backend(self.backend_name).calls_upstream
        except AssistantError:
            return True  # an unknown backend: iterating says so, as a failed answer

    @property
    def timeout_s(self) -> float:
        return self.route.timeout_s or self.config.assistant_timeout_s

    def __iter__(self) -> Iterator[StreamEvent]:
        backend = get_backend(self.backend_name)
        if not backend.calls_upstream:
            # The offline backend has no upstream to protect or retry.
            yield from backend.stream(self._request(self.timeout_s))
            return
        attempts = _Attempts(self)
        while True:
            request = attempts.start()
            sent_text = False
            try:
                for event in backend.stream(request):
                    sent_text = sent_text or isinstance(event, TextDelta)
                    yield event
            except AssistantError as exc:
                if attempts.retry_after(exc, sent_text):
                    continue
                raise
            attempts.succeeded()
            return

    async def astream(self) -> AsyncGenerator[StreamEvent]:
        """The same as iterating, for an event loop: the backend's ``astream``."""
        backend = get_backend(self.backend_name)
        if not backend.calls_upstream:
            async for event in backend.astream(self._request(self.timeout_s)):
                yield event
            return
        attempts = _Attempts(self)
        while True:
            request = attempts.start()
            sent_text = False
            try:
                async for event in backend.astream(request):
                    sent_text = sent_text or isinstance(event, TextDelta)
                    yield event
            except AssistantError as exc:
                if attempts.retry_after(exc, sent_text):
                    continue
                raise
            attempts.succeeded()
            return

    def _request(self, timeout_s: float) -> AssistantRequest:
        return AssistantRequest(
            text=self.text,
            location=self.location,
            route=self.route,
            model=self.model,
            timeout_s=max(timeout_s, 0.1),
        )


class _Attempts:
    """The retry policy of one call: the breaker, the deadline and the retries left."""

    def __init__(self, call: AssistantCall) -> None:
        self.call = call
        self.breaker = breaker_for(call.backend_name)
        self.deadline = time.monotonic() + call.timeout_s
        self.retries_left = call.config.assistant_retries

    def start(self) -> AssistantRequest:
        """The next attempt's request (its timeout: what is left of the deadline)."""
        if not self.breaker.allow():
            raise AssistantError(
                FailureKind.UNAVAILABLE, "the model is unavailable right now (circuit open)"
            )
        self.call.upstream_calls += 1
        return self.call._request(self.deadline - time.monotonic())

    def retry_after(self, exc: AssistantError, sent_text: bool) -> bool:
        if exc.kind is not FailureKind.REJECTED:
            self.breaker.record_failure()
        remaining = self.deadline - time.monotonic()
        # Once text has reached the person a retry would show a second answer.
        if exc.retryable and not sent_text and self.retries_left > 0 and remaining >= MIN_ATTEMPT_S:
            self.retries_left -= 1
            logger.info("assistant %s failed (%s); retrying", self.call.backend_name, exc.kind)
            return True
        return False

    def succeeded(self) -> None:
        self.breaker.record_success()


# --- Response cache -------------------------------------------------------------------

_SPACES = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s.!?]+$")


def normalise_text(text: str) -> str:
    return _TRAILING.sub("", _SPACES.sub(" ", text.casefold()).strip())


def response_cache_key(*, call: AssistantCall) -> str:
    """Everything that shapes the answer: route and its version, backend, model, location, text."""
    parts = (
        call.route.slug,
        str(call.route.version),
        call.backend_name,
        call.model,
        call.location.casefold().strip(),
        normalise_text(call.text),
    )
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"answers:v1:{digest}"


def response_cache_usable(*, call: AssistantCall) -> bool:
    return call.config.response_cache_enabled and not call.route.is_emergency


def response_cache_get(*, call: AssistantCall) -> Completion | None:
    if not response_cache_usable(call=call):
        return None
    try:
        hit = cache.get(response_cache_key(call=call))
    except Exception:
        logger.warning("response cache unavailable", exc_info=True)
        return None
    return hit if isinstance(hit, Completion) else None


def response_cache_put(*, call: AssistantCall, completion: Completion) -> None:
    if not response_cache_usable(call=call) or not completion.text:
        return
    try:
        cache.set(response_cache_key(call=call), completion, call.config.response_cache_ttl_s)
    except Exception:
        logger.warning("response cache unavailable", exc_info=True)
