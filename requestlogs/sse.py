"""A submit's answer as server-sent events: the pipeline's events, each sent as it happens.

``route``, then ``delta`` (``{"text"}``) as the answer grows, then ``done`` (the request
object) or ``error`` (the request object and a message). This is the one place the answer is
streamed to the person.
"""

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from asgiref.sync import async_to_sync
from rest_framework.renderers import BaseRenderer

from requestlogs.models import RequestStatus
from requestlogs.pipeline import AnswerDelta, PipelineEvent, RequestRun, RouteChosen
from requestlogs.selectors import request_log_payload, suggested_route_payload

logger = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"

# What an `error` event says; the row's own `error` column is for staff and may carry
# upstream details, so it is not sent to clients.
FAILURE_MESSAGES: dict[str, str] = {
    RequestStatus.TIMEOUT: "The assistant did not answer in time.",
    RequestStatus.ERROR: "The assistant could not answer.",
}
INTERNAL_ERROR_MESSAGE = "ClubOS failed while answering this request."


class EventStreamRenderer(BaseRenderer):
    """``text/event-stream``, for DRF's content negotiation: a client that asks for it gets
    the answer as events (``EventStream``, which the view returns itself). Anything else
    the view answers, an error before the stream starts included, is JSON."""

    media_type = EVENT_STREAM
    format = "sse"
    charset = None

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        return sse_frame("error", data if isinstance(data, dict) else {"detail": data})


def sse_frame(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event: a name and one line of compact JSON."""
    payload = json.dumps(data, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


def _frame(event: PipelineEvent) -> bytes:
    if isinstance(event, AnswerDelta):
        return sse_frame("delta", {"text": event.text})
    if isinstance(event, RouteChosen):
        decision = event.decision
        return sse_frame(
            "route",
            {
                "id": str(event.log.pk),
                "route": {"slug": decision.route.slug, "name": decision.route.name},
                "routing": {
                    "source": decision.source,
                    "confidence": round(decision.confidence, 3),
                    "possible_emergency": decision.possible_emergency,
                },
                "timings_ms": {"routing": round(decision.elapsed_ms, 1)},
                **suggested_route_payload(event.suggested),
            },
        )
    payload = request_log_payload(event.log, catalog=event.catalog, alerts=event.alerts)
    payload.update(suggested_route_payload(event.suggested))
    if not event.failed:
        return sse_frame("done", payload)
    message = FAILURE_MESSAGES.get(event.log.status, FAILURE_MESSAGES[RequestStatus.ERROR])
    return sse_frame("error", {**payload, "error": message})


class EventStream:
    """A request's events as frames, the content of the view's ``StreamingHttpResponse``.

    Django closes a response's content when it is done with the response (``close``, from
    a thread, under ASGI as under WSGI). A client gone in the middle of the stream, or
    before it even started, leaves the stream unfinished: closing it finishes the request's
    row (``abandoned``) there and then, not whenever the garbage collector gets to it.
    """

    def __init__(self, run: RequestRun) -> None:
        self.run = run
        self._frames = self._render()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames

    async def _render(self) -> AsyncGenerator[bytes]:
        try:
            async for event in self.run.events():
                yield _frame(event)
        except Exception:
            # The pipeline has marked the row `error`; the client gets a last event
            # instead of a stream that just stops.
            logger.exception("request %s failed while streaming", self.run.log.pk)
            payload = request_log_payload(
                self.run.log, catalog=self.run.request.catalog, alerts=self.run.alerts
            )
            payload.update(suggested_route_payload(self.run.suggested))
            yield sse_frame("error", {**payload, "error": INTERNAL_ERROR_MESSAGE})

    def close(self) -> None:
        if not self.run.finished:
            async_to_sync(self.aclose)()

    async def aclose(self) -> None:
        await self._frames.aclose()
        await self.run.close()
