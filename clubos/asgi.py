"""The ASGI application: Django, plus the lifespan events a server like gunicorn's ``asgi``
worker sends, which Django itself does not handle."""

import asyncio
import os
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, closing
from typing import IO, Any, cast

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import set_script_prefix

from clubos.serving import EVENT_LOOP_KEY, EventStreamResponse, LastPart, to_the_end

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clubos.settings")


class _RequestProcessed(Exception):
    pass


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGI handler, running the middleware and the view in one thread hop.

    Every middleware in this project is synchronous at heart: under Django's own handler
    each one's ``process_request`` and ``process_response`` is a separate trip from the
    event loop to a thread and back, a dozen per request, plus one for each of the
    request signals, each waiting behind whatever else the loop is doing. Here
    ``request_started``, the whole chain and (for a response whose body is complete)
    ``request_finished`` run as under WSGI, in the request's thread, in one trip. What
    stays on the loop is reading the request, sending the response, and iterating a
    streaming response's async iterator: the answer's wait on the model
    (``requestlogs.services.request_process_async``); a streamed response is closed in
    a second trip once it has been sent. The API's busiest call, a submit with a token
    the worker knows, makes no trip until its response is sent when it can be served on
    the loop (``requestlogs.apis.request_submit_on_loop``).

    Each request's thread is a long-lived one borrowed from ``_RequestThreads``: Django's
    handler starts (and joins) a new thread per request, which stalls the event loop
    while the new thread waits for the GIL.
    """

    def __init__(self) -> None:
        super().__init__()
        self.threads = _RequestThreads()

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.threads.acquire()
        try:
            # asgiref runs this request's thread-sensitive calls (the middleware and view,
            # the final write) on `executor`, one at a time, and leaves it running.
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.threads.release(executor)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's ``handle``, its thread work gathered into ``respond``."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            scope[EVENT_LOOP_KEY] = asyncio.get_running_loop()
            response = None
            responding: asyncio.Future[HttpResponseBase] | None = None
            try:
                try:
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self.listen_for_disconnect(receive))
                        # Shielded: if the client goes away meanwhile, the view still ends
                        # in its thread, and its unsent response is dealt with below.
                        responding = asyncio.ensure_future(self.respond_async(scope, body_file))
                        response = await asyncio.shield(responding)
                        await self.send_response(response, send)
                        raise _RequestProcessed
                except* (_RequestProcessed, RequestAborted):
                    pass
            except BaseExceptionGroup as group:
                # As Django does: the server sees the one real failure, not a group.
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise
            if response is None and responding is not None:
                # The server may cancel this task some seconds after the client left; the
                # view's thread and the stream's clean-up must still run to their end.
                response = await to_the_end(self.unsent(responding))
            if response is None:
                await signals.request_finished.asend(sender=self.__class__)
            elif not response.closed:  # a stream, or a body made on the loop
                await sync_to_async(response.close, thread_sensitive=True)()

    @staticmethod
    async def unsent(responding: "asyncio.Future[HttpResponseBase]") -> HttpResponseBase:
        """The response of a view the client left before it could be sent.

        An event stream is discarded so that its own clean-up runs: a request's row is
        marked abandoned and its model call closed (left alone, the row stayed
        ``received`` until the next sweep, and the call ran on unread).
        """
        response = await responding
        if isinstance(response, EventStreamResponse):
            await response.discard()
        return response

    async def send_response(self, response: HttpResponseBase, send: Any) -> None:
        """Django's, except that a streamed response ends with its ``LastPart``: that part
        and the end of the body go out in one message, then the stream is read to its end
        (its clean-up); an event stream is closed whatever happens."""
        if not isinstance(response, StreamingHttpResponse):
            await super().send_response(response, send)
            return
        headers = [
            (
                header.encode("ascii") if isinstance(header, str) else bytes(header),
                value.encode("latin1") if isinstance(value, str) else bytes(value),
            )
            for header, value in response.items()
        ]
        headers += [
            (b"Set-Cookie", c.OutputString().encode("ascii")) for c in response.cookies.values()
        ]
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        ended = False
        try:
            # Django's __aiter__ is an async generator (a sync iterator, mapped).
            async with aclosing(cast(AsyncGenerator[bytes], aiter(response))) as content:
                async for part in content:
                    if ended:
                        # Nothing follows a LastPart: reading on only runs the stream's own
                        # clean-up to its end, here, after the client has everything.
                        continue
                    if isinstance(part, LastPart):
                        await send(
                            {"type": "http.response.body", "body": bytes(part), "more_body": False}
                        )
                        ended = True
                        continue
                    for chunk, _ in self.chunk_bytes(part):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not ended:
                await send({"type": "http.response.body"})
        finally:
            if isinstance(response, EventStreamResponse):
                # Cancelled in a send (a slow reader gone), the stream is left paused at a
                # frame, which closing Django's wrapper does not reach: close it here, so a
                # request's row is marked abandoned now, in the request.
                await to_the_end(response.close_stream())

    async def respond_async(self, scope: dict[str, Any], body_file: IO[bytes]) -> HttpResponseBase:
        """The response: the API's submit on the loop when it can be served there
        (``request_submit_on_loop``), otherwise ``respond`` in the request's thread."""
        response = await request_submit_on_loop(scope, body_file)
        if response is not None:
            return response
        body_file.seek(0)
        return await sync_to_async(self.respond, thread_sensitive=True)(scope, body_file)

    def respond(self, scope: dict[str, Any], body_file: IO[bytes]) -> HttpResponseBase:
        """In the request's thread: the request's start, the middleware and view, and
        (its body being complete) a plain response's end, before its bytes go out."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__  # type: ignore[attr-defined]
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        assert response is not None
        if not response.streaming:
            response.close()
        return response


class _RequestThreads:
    """Idle one-thread executors, each lent to one request at a time.

    A thread keeps its own database connection object (Django's are per thread), which
    the request gives back to the pool when it finishes, as under WSGI.
    """

    MAX_IDLE = 256

    def __init__(self) -> None:
        self._idle: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()

    def acquire(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="clubos-request")

    def release(self, executor: ThreadPoolExecutor) -> None:
        with self._lock:
            if len(self._idle) < self.MAX_IDLE:
                self._idle.append(executor)
                return
        executor.shutdown(wait=False)


django.setup(set_prefix=False)
from requestlogs.apis import request_submit_on_loop  # noqa: E402

django_application = OneHopASGIHandler()

# Every process that serves requests trains the router and opens its upstream connection
# before it takes traffic (clubos.warmup).
from clubos.warmup import warm_up, warm_up_async  # noqa: E402
from config.db_async import db_async_close  # noqa: E402
from config.llm import openai_async_channel_close  # noqa: E402

warm_up()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "lifespan":
        await django_application(scope, receive, send)
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # The event loop exists now: its channel to the model's server can connect.
            await warm_up_async()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await openai_async_channel_close()
            await db_async_close()
            await send({"type": "lifespan.shutdown.complete"})
            return
