"""Getting a routed request answered: the one retry loop, the breaker and the response cache."""

import hashlib
import logging
import re
import time
from collections.abc import AsyncGenerator
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
from assistants.metrics import upstream_error_count
from config.selectors import ConfigSnapshot
from routing.selectors import RouteSnapshot

logger = logging.getLogger(__name__)

# A retry is only worth starting if it has a real chance to finish.
MIN_ATTEMPT_S = 0.5


@dataclass
class AssistantCall:
    """One routed request's trip to its backend, streamed by ``astream``.

    ``astream`` yields ``TextDelta`` events and then one ``Completion``, or raises
    ``AssistantError`` once retries and the deadline are spent. Afterwards the attributes
    say what happened: how many upstream calls, which backend and model.
    """

    text: str
    location: str
    route: RouteSnapshot
    config: ConfigSnapshot
    backend_name: str = ""
    model: str = ""
    upstream_calls: int = 0

    def __post_init__(self) -> None:
        self.backend_name = backend_name_for(self.route.backend)
        self.model = self.route.model or self.config.default_assistant_model

    @property
    def timeout_s(self) -> float:
        return self.route.timeout_s or self.config.assistant_timeout_s

    async def astream(self) -> AsyncGenerator[StreamEvent]:
        backend = get_backend(self.backend_name)
        if not backend.calls_upstream:
            # The offline backend has no upstream to protect or retry.
            async for event in backend.astream(self._request(self.timeout_s)):
                yield event
            return
        attempts = _Attempts(self)
        while True:
            request = attempts.start()
            sent_text = False
            try:
                async for event in backend.astream(request):
                    if isinstance(event, Completion):
                        # The answer is whole: the verdict does not wait for the body's end.
                        attempts.succeeded()
                    sent_text = sent_text or isinstance(event, TextDelta)
                    yield event
            except AssistantError as exc:
                if attempts.retry_after(exc, sent_text):
                    continue
                raise
            finally:
                # Cancelled or closed early (the person left): no verdict on the model.
                attempts.ended()
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
        self.in_flight = False
        self.sent_at = 0.0  # when the breaker let the attempt in flight through

    def start(self) -> AssistantRequest:
        """The next attempt's request (its timeout: what is left of the deadline)."""
        if not self.breaker.allow():
            raise AssistantError(
                FailureKind.UNAVAILABLE, "the model is unavailable right now (circuit open)"
            )
        self.in_flight = True
        self.sent_at = time.monotonic()
        self.call.upstream_calls += 1
        return self.call._request(self.deadline - time.monotonic())

    def retry_after(self, exc: AssistantError, sent_text: bool) -> bool:
        self.in_flight = False
        upstream_error_count(backend=self.call.backend_name, kind=exc.reason)
        if exc.kind is FailureKind.REJECTED:
            self.breaker.record_no_verdict(sent_at=self.sent_at)
        else:
            self.breaker.record_failure(sent_at=self.sent_at)
        remaining = self.deadline - time.monotonic()
        # Once text has reached the person a retry would show a second answer.
        if exc.retryable and not sent_text and self.retries_left > 0 and remaining >= MIN_ATTEMPT_S:
            self.retries_left -= 1
            logger.info("assistant %s failed (%s); retrying", self.call.backend_name, exc.kind)
            return True
        return False

    def succeeded(self) -> None:
        self.in_flight = False
        self.breaker.record_success()

    def ended(self) -> None:
        if self.in_flight:
            self.in_flight = False
            self.breaker.record_no_verdict(sent_at=self.sent_at)


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


async def response_cache_get(*, call: AssistantCall) -> Completion | None:
    if not response_cache_usable(call=call):
        return None
    try:
        hit = await cache.aget(response_cache_key(call=call))
    except Exception:
        logger.warning("response cache unavailable", exc_info=True)
        return None
    return hit if isinstance(hit, Completion) else None


async def response_cache_put(*, call: AssistantCall, completion: Completion) -> None:
    if not response_cache_usable(call=call) or not completion.text:
        return
    try:
        await cache.aset(
            response_cache_key(call=call), completion, call.config.response_cache_ttl_s
        )
    except Exception:
        logger.warning("response cache unavailable", exc_info=True)
