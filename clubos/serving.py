"""What the ASGI handler (``clubos.asgi``) tells a view about how its request is served."""

import asyncio

from django.http import HttpRequest

EVENT_LOOP_KEY = "clubos.event_loop"
"""The ASGI scope key under which ``clubos.asgi`` puts the event loop serving the request."""


def request_event_loop(request: HttpRequest) -> asyncio.AbstractEventLoop | None:
    """The loop serving this request under ``clubos.asgi``: a view running in the request's
    thread can start work on it. None under WSGI or another ASGI handler."""
    scope = getattr(request, "scope", None)
    loop = scope.get(EVENT_LOOP_KEY) if isinstance(scope, dict) else None
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None
