"""What the ASGI handler (``clubos.asgi``) tells a view about how its request is served."""

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Iterable
from typing import Any

from django.http import HttpRequest, StreamingHttpResponse

logger = logging.getLogger(__name__)

EVENT_LOOP_KEY = "clubos.event_loop"
"""The ASGI scope key under which ``clubos.asgi`` puts the event loop serving the request."""


def request_event_loop(request: HttpRequest) -> asyncio.AbstractEventLoop | None:
    """The loop serving this request under ``clubos.asgi``: a view running in the request's
    thread can start work on it. None under WSGI or another ASGI handler."""
    scope = getattr(request, "scope", None)
    loop = scope.get(EVENT_LOOP_KEY) if isinstance(scope, dict) else None
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


class LastPart(bytes):
    """A streamed response's last part. ``clubos.asgi`` sends it with the end of the body,
    in one write: the client sees the end of the stream one write (and one wake-up)
    sooner, and what the stream still does after it (waiting for an alert to go out)
    runs once the client has everything. Any other server sends it as ordinary bytes."""


class EventStreamResponse(StreamingHttpResponse):
    """A streamed response that keeps its ``LastPart`` marked (Django's ``make_bytes``
    would turn it into plain bytes on the way to the handler)."""

    def __init__(
        self,
        streaming_content: Iterable[object] | AsyncIterable[object] = (),
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(streaming_content, *args, **kwargs)
        self.stream = streaming_content

    def make_bytes(self, value: object) -> bytes:
        return value if isinstance(value, LastPart) else super().make_bytes(value)

    async def close_stream(self) -> None:
        """Close the stream itself (Django's wrappers around it do not), so that its clean-up
        runs now, in the request, and not whenever the response is garbage-collected. A no-op
        for a stream that ran to its end."""
        if isinstance(self.stream, AsyncGenerator):
            await self.stream.aclose()

    async def discard(self) -> None:
        """For a response that will never be sent (the client left first): start the stream
        and close it, so that its own clean-up runs as it would for a client gone mid-way
        (closing a stream that never started would run none of its code)."""
        if not isinstance(self.stream, AsyncGenerator):
            return
        try:
            await anext(self.stream, None)
        finally:
            await self.close_stream()


async def to_the_end[T](work: Awaitable[T]) -> T:
    """Await ``work`` to its end even if the task awaiting it is cancelled meanwhile (the
    client went away, the server gave up on the request): a request's final write or its
    clean-up cut off half-way would leave its row unfinished. The cancellation is passed on
    once the work is done."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
        except BaseException:  # noqa: S110 - the work's own failure: task.result() raises it
            pass
    if cancelled and not task.cancelled():
        if (failure := task.exception()) is not None:
            logger.error("work finished after a cancellation failed", exc_info=failure)
        raise asyncio.CancelledError
    return task.result()
