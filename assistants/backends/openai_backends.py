"""Backends that call an OpenAI-compatible upstream through the official SDK."""

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
    if isinstance(exc, openai.APITimeoutError):
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


def _guarded(
    open_stream: Callable[[], Any], read: Callable[[Any], Iterator[StreamEvent]], budget_s: float
) -> Iterator[StreamEvent]:
    """Run an SDK stream, translating its errors and enforcing the whole-call budget.

    The SDK's timeout bounds each read; a model that trickles tokens forever is cut off
    here, when the budget is spent.
    """
    deadline = time.monotonic() + budget_s
    try:
        stream = open_stream()
    except Exception as exc:
        raise translate_openai_error(exc) from exc
    try:
        for event in read(stream):
            if time.monotonic() > deadline:
                raise AssistantError(FailureKind.TIMEOUT, "the model did not finish in time")
            yield event
    except AssistantError:
        raise
    except Exception as exc:
        raise translate_openai_error(exc) from exc
    finally:
        stream.close()


class OpenAIResponsesBackend(AssistantBackend):
    """OpenAI's Responses API, streamed; instructions come from the route, not a dashboard."""

    name = "openai-responses"

    def stream(self, request: AssistantRequest) -> Iterator[StreamEvent]:
        def open_stream() -> Any:
            return openai_client().responses.create(
                model=request.model,
                instructions=request.route.instructions,
                input=self.user_message(request),
                stream=True,
                store=False,
                timeout=call_timeout(request.timeout_s),
            )

        def read(stream: Any) -> Iterator[StreamEvent]:
            parts: list[str] = []
            for event in stream:
                kind = event.type
                if kind == "response.output_text.delta":
                    if event.delta:
                        parts.append(event.delta)
                        yield TextDelta(event.delta)
                elif kind == "response.completed":
                    usage = event.response.usage
                    yield Completion(
                        text="".join(parts),
                        model=event.response.model or request.model,
                        tokens_in=usage.input_tokens if usage else None,
                        tokens_out=usage.output_tokens if usage else None,
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
            return openai_client().chat.completions.create(
                model=request.model,
                messages=[
                    {"role": "system", "content": request.route.instructions},
                    {"role": "user", "content": self.user_message(request)},
                ],
                stream=True,
                stream_options={"include_usage": True},
                timeout=call_timeout(request.timeout_s),
            )

        def read(stream: Any) -> Iterator[StreamEvent]:
            parts: list[str] = []
            model = request.model
            usage = None
            finished = False
            for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        parts.append(choice.delta.content)
                        yield TextDelta(choice.delta.content)
                    if choice.finish_reason:
                        finished = True
            if not finished:
                raise AssistantError(FailureKind.UPSTREAM, "the model's stream ended early")
            yield Completion(
                text="".join(parts),
                model=model,
                tokens_in=usage.prompt_tokens if usage else None,
                tokens_out=usage.completion_tokens if usage else None,
            )

        return _guarded(open_stream, read, request.timeout_s)
