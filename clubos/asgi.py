"""The ASGI application: Django, plus the lifespan events a server like gunicorn's ``asgi``
worker sends, which Django itself does not handle."""

import os
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clubos.settings")


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGI handler, running the middleware and the view in one thread hop.

    Every middleware in this project is synchronous at heart: under Django's own handler
    each one's ``process_request`` and ``process_response`` is a separate trip from the
    event loop to a thread and back, a dozen per request, each waiting behind whatever
    else the loop is doing. Here the whole chain runs as under WSGI, in the request's
    thread, in one trip. What stays on the loop is reading the request, sending the
    response, and iterating a streaming response's async iterator: the answer's wait
    on the model (``requestlogs.services.request_process_async``).
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


django.setup(set_prefix=False)
django_application = OneHopASGIHandler()

# Every process that serves requests trains the router and opens its upstream connection
# before it takes traffic (clubos.warmup).
from clubos.warmup import warm_up, warm_up_async  # noqa: E402
from config.llm import openai_async_client_close  # noqa: E402

warm_up()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "lifespan":
        await django_application(scope, receive, send)
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # The event loop exists now: its async OpenAI client can open its connection.
            await warm_up_async()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await openai_async_client_close()
            await send({"type": "lifespan.shutdown.complete"})
            return
