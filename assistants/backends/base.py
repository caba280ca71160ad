"""What an assistant backend is: a routed request in, a stream of answer text out."""

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from routing.selectors import RouteSnapshot


@dataclass(frozen=True, slots=True)
class AssistantRequest:
    text: str
    location: str
    route: RouteSnapshot
    model: str
    # Seconds this attempt may take; the retry loop shrinks it to what is left of the deadline.
    timeout_s: float


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Completion:
    """The last event of a successful stream."""

    text: str
    model: str
    tokens_in: int | None = None
    tokens_out: int | None = None


StreamEvent = TextDelta | Completion


class FailureKind(StrEnum):
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    UPSTREAM = "upstream"  # 5xx, connection dropped, malformed stream
    REJECTED = "rejected"  # 4xx other than 429: retrying cannot help
    UNAVAILABLE = "unavailable"  # circuit open, or the backend is not configured


class AssistantError(Exception):
    def __init__(self, kind: FailureKind, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        # A finer name for the metrics (``upstream`` is a 5xx, a dropped connection or a
        # malformed stream); the kind where there is nothing finer to say.
        self.reason = reason or kind.value

    @property
    def retryable(self) -> bool:
        return self.kind in {FailureKind.TIMEOUT, FailureKind.RATE_LIMITED, FailureKind.UPSTREAM}


class AssistantBackend(ABC):
    """Answers a routed request, streaming, on the event loop.

    ``astream`` yields ``TextDelta`` events as the answer grows and one ``Completion``
    last, or raises ``AssistantError``. Each call of ``astream`` is one upstream call: it
    never retries (the one retry loop is ``assistants.services.AssistantCall``) and never
    writes the request log. ``calls_upstream`` says whether it reaches a model; a backend
    that does not only computes, and never waits.
    """

    name: ClassVar[str]
    calls_upstream: ClassVar[bool] = True

    @abstractmethod
    def astream(self, request: AssistantRequest) -> AsyncIterator[StreamEvent]: ...

    def user_message(self, request: AssistantRequest) -> str:
        if request.location:
            return f"Location: {request.location}\n\n{request.text}"
        return request.text
