"""Backends that stream from an OpenAI-compatible upstream, on the event loop, through aiohttp."""

import asyncio
import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp

from assistants.backends.base import (
    AssistantBackend,
    AssistantError,
    AssistantRequest,
    Completion,
    FailureKind,
    StreamEvent,
    TextDelta,
)
from config.llm import UpstreamNotConfigured, openai_async_channel

CONNECT_S = 3.0
_TOO_SLOW = "the model did not finish in time"


def status_failure(status: int) -> AssistantError:
    """An HTTP error status from the model's server as our failure kind."""
    if status == 429:
        return AssistantError(FailureKind.RATE_LIMITED, "the model is rate-limited (429)")
    if status >= 500:
        return AssistantError(
            FailureKind.UPSTREAM, f"the model failed ({status})", reason="server_error"
        )
    return AssistantError(FailureKind.REJECTED, f"the model refused the call ({status})")


def translate_upstream_error(exc: Exception) -> AssistantError:
    """What went wrong on the way to the model, as our failure kinds."""
    if isinstance(exc, AssistantError):
        return exc
    if isinstance(exc, UpstreamNotConfigured):
        return AssistantError(FailureKind.UNAVAILABLE, str(exc))
    if isinstance(exc, TimeoutError):
        return AssistantError(FailureKind.TIMEOUT, "the model did not answer in time")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return AssistantError(
            FailureKind.UPSTREAM, "lost the connection to the model", reason="disconnect"
        )
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


def _chunk_text(decoder: SSEDecoder, protocol: _StreamProtocol, chunk: bytes) -> str:
    texts = []
    for name, data in decoder.feed(chunk):
        if data == b"[DONE]":
            protocol.ended = True
        elif protocol.wanted(name):
            texts.append(protocol.text_of(_json(data)))
    return "".join(texts)


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


class _OpenAICompatibleBackend(AssistantBackend):
    """One streamed call to an OpenAI-compatible server, bounded by the request's budget.

    Sent straight through aiohttp with the OpenAI client's address, key and headers
    (``config.llm.openai_async_channel``): through the SDK's async client, building and
    sending the call cost three times the CPU (bench/README.md). Every wait (the response's
    headers, each read) is bounded by what is left of the budget, so a hanging model costs
    the loop nothing and the request no more than that. The body is read from the raw
    HTTP response: text that arrives in one read is one delta (one write to the person, not
    one per token), and only the events that can matter are parsed.
    """

    path: ClassVar[str]
    protocol: ClassVar[type[_StreamProtocol]]

    @abstractmethod
    def body(self, request: AssistantRequest) -> dict[str, Any]: ...

    async def astream(self, request: AssistantRequest) -> AsyncIterator[StreamEvent]:
        deadline = asyncio.get_running_loop().time() + request.timeout_s
        try:
            channel = openai_async_channel()
        except UpstreamNotConfigured as exc:
            raise translate_upstream_error(exc) from exc
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    response = await channel.session.post(
                        channel.url(self.path),
                        data=json.dumps(self.body(request)).encode(),
                        headers=channel.headers,
                        timeout=aiohttp.ClientTimeout(
                            total=None, sock_connect=min(request.timeout_s, CONNECT_S)
                        ),
                    )
            except Exception as exc:
                raise translate_upstream_error(exc) from exc
            if response.status >= 400:
                response.close()
                raise status_failure(response.status)
            try:
                async for event in self._read(response, request, deadline):
                    yield event
            finally:
                # Read to its end, the connection goes back to the pool; cut short, closed.
                response.release()
        finally:
            if channel.for_one_call:
                await channel.session.close()

    async def _read(
        self, response: aiohttp.ClientResponse, request: AssistantRequest, deadline: float
    ) -> AsyncIterator[StreamEvent]:
        protocol = self.protocol(request.model)
        decoder = SSEDecoder()
        parts: list[str] = []
        chunks = response.content.iter_any()
        try:
            while not protocol.ended:
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
        except AssistantError:
            raise
        except Exception as exc:
            raise translate_upstream_error(exc) from exc
        # Once the answer has ended it is complete: the row's final write need not wait for
        # the body's end, which is read once the caller asks for more (after the person has
        # everything), so that the connection serves the next call.
        yield protocol.completion("".join(parts))
        with contextlib.suppress(Exception):
            async with asyncio.timeout_at(deadline):
                async for _ in chunks:
                    pass


class OpenAIResponsesBackend(_OpenAICompatibleBackend):
    """OpenAI's Responses API, streamed; instructions come from the route, not a dashboard."""

    name = "openai-responses"
    path = "responses"
    protocol = _ResponsesProtocol

    def body(self, request: AssistantRequest) -> dict[str, Any]:
        return {
            "model": request.model,
            "instructions": request.route.instructions,
            "input": self.user_message(request),
            "stream": True,
            "store": False,
        }


class OpenAIChatBackend(_OpenAICompatibleBackend):
    """Chat Completions, for OpenAI-compatible servers (vLLM, Ollama, LiteLLM)."""

    name = "openai-chat"
    path = "chat/completions"
    protocol = _ChatProtocol

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
