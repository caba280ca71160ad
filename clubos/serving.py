"""What the ASGI handler (``clubos.asgi``) tells a view about how its request is served."""

import asyncio

from django.http import HttpRequest, StreamingHttpResponse

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
    in one write, before it closes the response's iterator: the client sees the end of
    the stream one write (and one wake-up) sooner, and whatever the iterator does when
    closed (waiting for an alert to go out) no longer holds the response open. Any
    other server sends it as ordinary bytes."""


class EventStreamResponse(StreamingHttpResponse):
    """A streamed response that keeps its ``LastPart`` marked (Django's ``make_bytes``
    would turn it into plain bytes on the way to the handler)."""

    def make_bytes(self, value: object) -> bytes:
        return value if isinstance(value, LastPart) else super().make_bytes(value)
