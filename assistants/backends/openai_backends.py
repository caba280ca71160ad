"""Backends that call an OpenAI-compatible upstream through the official SDK."""

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

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
from config.llm import UpstreamNotConfigured, openai_client


def call_timeout(seconds: float) -> httpx2.Timeout:
    """A per-call timeout: the read gap and the whole budget are the same number."""
    return httpx2.Timeout(seconds, connect=min(seconds, 3.0))


def translate_openai_error(exc: Exception) -> AssistantError:
    """The SDK's exceptions as our failure kinds."""
    if isinstance(exc, AssistantError):
        return exc
    if isinstance(exc, UpstreamNotConfigured):
        return AssistantError(FailureKind.UNAVAILABLE, str(exc))
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return AssistantError(FailureKind.TIMEOUT, "the model did not answer in time")
    if isinstance(exc, openai.RateLimitError):
        return AssistantError(FailureKind.RATE_LIMITED, "the model is rate-limited (429)")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500:
            return AssistantError(FailureKind.UPSTREAM, f"the model failed ({exc.status_code})")
        return AssistantError(
            FailureKind.REJECTED, f"the model refused the call ({exc.status_code})"
        )
    if isinstance(exc, openai.APIConnectionError | httpx2.HTTPError):
        return AssistantError(FailureKind.UPSTREAM, "lost the connection to the model")
    if isinstance(exc, openai.OpenAIError):
        return AssistantError(FailureKind.UPSTREAM, f"the model's answer was unusable: {exc}")
    raise exc


def _events(response: Any) -> Iterator[dict[str, Any]]:
    """The JSON of each server-sent event's ``data`` line, until ``[DONE]`` or the end.

    The SDK would build a pydantic model for every event; for a streamed answer that is
    most of the server's CPU per request (hundreds of token deltas), and the two fields
    we read need none of it. The request itself still goes through the SDK: auth, base
    URL, headers, and status codes raised as the SDK's exceptions.
    """
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except ValueError as exc:
            raise AssistantError(FailureKind.UPSTREAM, "the model sent malformed data") from exc


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
                raise AssistantError(FailureKind.TIMEOUT, "the model did not finish in time")
            yield event
    except AssistantError:
        raise
    except Exception as exc:
        raise translate_openai_error(exc) from exc
    finally:
        response.close()


class OpenAIResponsesBackend(AssistantBackend):
    """OpenAI's Responses API, streamed; instructions come from the route, not a dashboard."""

    name = "openai-responses"

    def stream(self, request: AssistantRequest) -> Iterator[StreamEvent]:
        def open_stream() -> Any:
            # Entering the SDK's context manager sends the request; _guarded closes the
            # response it returns, which is all its __exit__ would do.
            return (
                openai_client()
                .responses.with_streaming_response.create(
                    model=request.model,
                    instructions=request.route.instructions,
                    input=self.user_message(request),
                    stream=True,
                    store=False,
                    timeout=call_timeout(request.timeout_s),
                )
                .__enter__()
            )

        def read(response: Any) -> Iterator[StreamEvent]:
            parts: list[str] = []
            for event in _events(response):
                kind = event.get("type")
                if kind == "response.output_text.delta":
                    delta = event.get("delta") or ""
                    if delta:
                        parts.append(delta)
                        yield TextDelta(delta)
                elif kind == "response.completed":
                    result = event.get("response") or {}
                    usage = result.get("usage") or {}
                    yield Completion(
                        text="".join(parts),
                        model=result.get("model") or request.model,
                        tokens_in=usage.get("input_tokens"),
                        tokens_out=usage.get("output_tokens"),
                    )
                    return
                elif kind in {"response.failed", "response.incomplete", "error"}:
                    raise AssistantError(FailureKind.UPSTREAM, f"the model stopped: {kind}")
            raise AssistantError(FailureKind.UPSTREAM, "the model's stream ended early")

        return _guarded(open_stream, read, request.timeout_s)


class OpenAIChatBackend(AssistantBackend):
    """Chat Completions, for OpenAI-compatible servers (vLLM, Ollama, LiteLLM)."""

    name = "openai-chat"

    def stream(self, request: AssistantRequest) -> Iterator[StreamEvent]:
        def open_stream() -> Any:
            return (
                openai_client()
                .chat.completions.with_streaming_response.create(
                    model=request.model,
                    messages=[
                        {"role": "system", "content": request.route.instructions},
                        {"role": "user", "content": self.user_message(request)},
                    ],
                    stream=True,
                    stream_options={"include_usage": True},
                    timeout=call_timeout(request.timeout_s),
                )
                .__enter__()
            )

        def read(response: Any) -> Iterator[StreamEvent]:
            parts: list[str] = []
            model = request.model
            usage: dict[str, Any] = {}
            finished = False
            for chunk in _events(response):
                model = chunk.get("model") or model
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        parts.append(content)
                        yield TextDelta(content)
                    if choice.get("finish_reason"):
                        finished = True
            if not finished:
                raise AssistantError(FailureKind.UPSTREAM, "the model's stream ended early")
            yield Completion(
                text="".join(parts),
                model=model,
                tokens_in=usage.get("prompt_tokens"),
                tokens_out=usage.get("completion_tokens"),
            )

        return _guarded(open_stream, read, request.timeout_s)
