"""Backends that call an OpenAI-compatible upstream: the SDK in threads, aiohttp on the loop."""

import asyncio
import contextlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import httpx2
import openai

from assistants.backends.base import (
    AssistantBackend,
    AssistantError,
    AssistantRequest,
    Completion,
    FailureKind,
    StreamEvent,
    TextDelta,
)
from config.llm import UpstreamNotConfigured, openai_async_channel, openai_client

CONNECT_S = 3.0


def call_timeout(seconds: float) -> httpx2.Timeout:
    """A per-call timeout: the read gap and the whole budget are the same number."""
    return httpx2.Timeout(seconds, connect=min(seconds, CONNECT_S))


def status_failure(status: int) -> AssistantError:
    """An HTTP error status from the model's server as our failure kind."""
    if status == 429:
        return AssistantError(FailureKind.RATE_LIMITED, "the model is rate-limited (429)")
    if status >= 500:
        return AssistantError(FailureKind.UPSTREAM, f"the model failed ({status})")
    return AssistantError(FailureKind.REJECTED, f"the model refused the call ({status})")


def translate_openai_error(exc: Exception) -> AssistantError:
    """The SDK's (and, on the event loop, aiohttp's) exceptions as our failure kinds."""
    if isinstance(exc, AssistantError):
        return exc
    if isinstance(exc, UpstreamNotConfigured):
        return AssistantError(FailureKind.UNAVAILABLE, str(exc))
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException | TimeoutError):
        return AssistantError(FailureKind.TIMEOUT, "the model did not answer in time")
    if isinstance(exc, openai.APIStatusError):
        return status_failure(exc.status_code)
    if isinstance(exc, openai.APIConnectionError | httpx2.HTTPError | aiohttp.ClientError):
        return AssistantError(FailureKind.UPSTREAM, "lost the connection to the model")
    if isinstance(exc, openai.OpenAIError):
        return AssistantError(FailureKind.UPSTREAM, f"the model's answer was unusable: {exc}")
    raise exc


class SSEDecoder:
    """Splits a server-sent event stream into its events: ``(event name, data)`` pairs.

    Fed the body as it arrives, one network read at a time; returns the events whose
    ``data:`` line each read completed. OpenAI-compatible servers send one ``data:`` line
    of JSON per event, so a payload is one JSON document (or ``[DONE]``); the name is the
    ``event:`` line before it, None if the server sends none (Chat Completions).
    """

    def __init__(self) -> None:
        self._pending = b""
        self._event: bytes | None = None

    def feed(self, chunk: bytes) -> list[tuple[bytes | None, bytes]]:
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        events = []
        for line in lines:
            if line.startswith(b"data:"):
                events.append((self._event, line[5:].strip()))
            elif line.startswith(b"event:"):
                self._event = line[6:].strip()
            elif not line.strip():
                self._event = None
        return events


def _json(payload: bytes) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise AssistantError(FailureKind.UPSTREAM, "the model sent malformed data") from exc
    if not isinstance(event, dict):
        raise AssistantError(FailureKind.UPSTREAM, "the model sent malformed data")
    return event


class _StreamProtocol(ABC):
    """What one API's events mean: the text each adds, failures, and the final completion."""

    def __init__(self, model: str) -> None:
        self.model = model
        # Set once the event that ends the answer has been read: what follows in the body
        # (if anything) changes nothing.
        self.ended = False

    def wanted(self, name: bytes | None) -> bool:
        """Whether an event of this name (None: unnamed) can matter; others are not parsed."""
        return True

    @abstractmethod
    def text_of(self, event: dict[str, Any]) -> str:
        """The answer text this event adds (``""`` for none); raises on a failure event."""

    @abstractmethod
    def completion(self, text: str) -> Completion:
        """The completion once the body has ended; raises if the stream ended early."""


def _read_stream(response: Any, protocol: _StreamProtocol) -> Iterator[StreamEvent]:
    """The answer as ``TextDelta`` events, one per network read, then its ``Completion``.

    The body is read from the raw HTTP response, not through the SDK's per-event models:
    for a streamed answer of a few hundred token deltas those were most of the server's
    CPU per request, and the two fields read here need none of it. Text that arrives in
    one read is one delta (one write to the person, not one per token). The body is read
    to its end so that the connection goes back to the client's pool for the next call.
    """
    decoder = SSEDecoder()
    parts: list[str] = []
    for chunk in response.http_response.iter_bytes():
        text = _chunk_text(decoder, protocol, chunk)
        if text:
            parts.append(text)
            yield TextDelta(text)
    yield protocol.completion("".join(parts))


def _chunk_text(decoder: SSEDecoder, protocol: _StreamProtocol, chunk: bytes) -> str:
    texts = []
    for name, data in decoder.feed(chunk):
        if data == b"[DONE]":
            protocol.ended = True
        elif protocol.wanted(name):
            texts.append(protocol.text_of(_json(data)))
    return "".join(texts)


_TOO_SLOW = "the model did not finish in time"


async def _post_stream(path: str, body: dict[str, Any], budget_s: float) -> aiohttp.ClientResponse:
    """Send one streamed call on the event loop's channel; its response once the headers
    are in, or the failure an error status means."""
    channel = openai_async_channel()
    response = await channel.session.post(
        channel.url(path),
        data=json.dumps(body).encode(),
        headers=channel.headers,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(budget_s, CONNECT_S)),
    )
    if response.status >= 400:
        response.close()
        raise status_failure(response.status)
    return response


async def _aguarded(
    open_stream: Callable[[], Awaitable[aiohttp.ClientResponse]],
    protocol: _StreamProtocol,
    budget_s: float,
) -> AsyncIterator[StreamEvent]:
    """``_guarded`` and ``_read_stream`` for an event loop: one streamed call, budget included.

    Every wait (the response's headers, each read) is bounded by what is left of the
    budget, so a hanging model costs the loop nothing and the request no more than that.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    try:
        async with asyncio.timeout_at(deadline):
            response = await open_stream()
    except TimeoutError as exc:
        raise AssistantError(FailureKind.TIMEOUT, "the model did not answer in time") from exc
    except Exception as exc:
        raise translate_openai_error(exc) from exc
    try:
        decoder = SSEDecoder()
        parts: list[str] = []
        chunks = response.content.iter_any()
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except TimeoutError as exc:
                raise AssistantError(FailureKind.TIMEOUT, _TOO_SLOW) from exc
            text = _chunk_text(decoder, protocol, chunk)
            if text:
                parts.append(text)
                yield TextDelta(text)
            if protocol.ended:
                break
        # Once the answer has ended it is complete: the row's final write need not wait
        # for the body's end, which is read once the caller asks for more (after the person
        # has everything), so that the connection serves the next call.
        yield protocol.completion("".join(parts))
        with contextlib.suppress(Exception):
            async with asyncio.timeout_at(deadline):
                async for _ in chunks:
                    pass
    except AssistantError:
        raise
    except Exception as exc:
        raise translate_openai_error(exc) from exc
    finally:
        # Read to its end, the connection goes back to the pool; cut short, it is closed.
        response.release()


def _guarded(
    open_stream: Callable[[], Any], read: Callable[[Any], Iterator[StreamEvent]], budget_s: float
) -> Iterator[StreamEvent]:
    """Run a streamed call, translating its errors and enforcing the whole-call budget.

    The per-call timeout bounds each read; a model that trickles tokens forever is cut
    off here, when the budget is spent.
    """
    deadline = time.monotonic() + budget_s
    try:
        response = open_stream()
    except Exception as exc:
        raise translate_openai_error(exc) from exc
    try:
        for event in read(response):
            if time.monotonic() > deadline:
                raise AssistantError(FailureKind.TIMEOUT, _TOO_SLOW)
            yield event
    except AssistantError:
        raise
    except Exception as exc:
        raise translate_openai_error(exc) from exc
    finally:
        response.close()


# The Responses API events text_of reads. The others (response.created, the .done events
# of each part...) repeat the route's instructions or the whole answer: parsing them was
# most of the JSON work per answer, and the last three of them sit between the model's
# last byte and the person seeing the end.
_RESPONSES_EVENTS_READ = frozenset(
    {
        b"response.output_text.delta",
        b"response.completed",
        b"response.failed",
        b"response.incomplete",
        b"error",
    }
)


class _ResponsesProtocol(_StreamProtocol):
    """Responses API events: ``response.output_text.delta``…, then ``response.completed``."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.result: dict[str, Any] | None = None

    def wanted(self, name: bytes | None) -> bool:
        return name is None or name in _RESPONSES_EVENTS_READ

    def text_of(self, event: dict[str, Any]) -> str:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            return event.get("delta") or ""
        if kind == "response.completed":
            self.result = event.get("response") or {}
            self.ended = True
        elif kind in {"response.failed", "response.incomplete", "error"}:
            raise AssistantError(FailureKind.UPSTREAM, f"the model stopped: {kind}")
        return ""

    def completion(self, text: str) -> Completion:
        if self.result is None:
            raise AssistantError(FailureKind.UPSTREAM, "the model's stream ended early")
        usage = self.result.get("usage") or {}
        return Completion(
            text=text,
            model=self.result.get("model") or self.model,
            tokens_in=usage.get("input_tokens"),
            tokens_out=usage.get("output_tokens"),
        )


class _ChatProtocol(_StreamProtocol):
    """Chat Completions chunks: ``choices[].delta.content``…, a ``finish_reason``, usage."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.usage: dict[str, Any] = {}
        self.finished = False

    def text_of(self, event: dict[str, Any]) -> str:
        self.model = event.get("model") or self.model
        self.usage = event.get("usage") or self.usage
        text = ""
        for choice in event.get("choices") or ():
            text += (choice.get("delta") or {}).get("content") or ""
            self.finished = self.finished or bool(choice.get("finish_reason"))
        return text

    def completion(self, text: str) -> Completion:
        if not self.finished:
            raise AssistantError(FailureKind.UPSTREAM, "the model's stream ended early")
        return Completion(
            text=text,
            model=self.model,
            tokens_in=self.usage.get("prompt_tokens"),
            tokens_out=self.usage.get("completion_tokens"),
        )


class OpenAIResponsesBackend(AssistantBackend):
    """OpenAI's Responses API, streamed; instructions come from the route, not a dashboard."""

    name = "openai-responses"

    path = "responses"

    def body(self, request: AssistantRequest) -> dict[str, Any]:
        return {
            "model": request.model,
            "instructions": request.route.instructions,
            "input": self.user_message(request),
            "stream": True,
            "store": False,
        }

    def stream(self, request: AssistantRequest) -> Iterator[StreamEvent]:
        def open_stream() -> Any:
            # Entering the SDK's context manager sends the request; _guarded closes the
            # response it returns, which is all its __exit__ would do.
            return (
                openai_client()
                .responses.with_streaming_response.create(
                    **self.body(request), timeout=call_timeout(request.timeout_s)
                )
                .__enter__()
            )

        def read(response: Any) -> Iterator[StreamEvent]:
            return _read_stream(response, _ResponsesProtocol(request.model))

        return _guarded(open_stream, read, request.timeout_s)

    def astream(self, request: AssistantRequest) -> AsyncIterator[StreamEvent]:
        def open_stream() -> Awaitable[aiohttp.ClientResponse]:
            return _post_stream(self.path, self.body(request), request.timeout_s)

        return _aguarded(open_stream, _ResponsesProtocol(request.model), request.timeout_s)


class OpenAIChatBackend(AssistantBackend):
    """Chat Completions, for OpenAI-compatible servers (vLLM, Ollama, LiteLLM)."""

    name = "openai-chat"

    path = "chat/completions"

    def body(self, request: AssistantRequest) -> dict[str, Any]:
        return {
            "model": request.model,
            "messages": [
                {"role": "system", "content": request.route.instructions},
                {"role": "user", "content": self.user_message(request)},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def stream(self, request: AssistantRequest) -> Iterator[StreamEvent]:
        def open_stream() -> Any:
            return (
                openai_client()
                .chat.completions.with_streaming_response.create(
                    **self.body(request), timeout=call_timeout(request.timeout_s)
                )
                .__enter__()
            )

        def read(response: Any) -> Iterator[StreamEvent]:
            return _read_stream(response, _ChatProtocol(request.model))

        return _guarded(open_stream, read, request.timeout_s)

    def astream(self, request: AssistantRequest) -> AsyncIterator[StreamEvent]:
        def open_stream() -> Awaitable[aiohttp.ClientResponse]:
            return _post_stream(self.path, self.body(request), request.timeout_s)

        return _aguarded(open_stream, _ChatProtocol(request.model), request.timeout_s)
