"""The ASGI application: Django's own handler (``get_asgi_application``), lending each
request a long-lived thread, plus the lifespan events a server like gunicorn's ``asgi``
worker or uvicorn sends, which Django itself does not handle."""

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clubos.settings")

django_application = get_asgi_application()


class LentThreads:
    """Which thread runs a request's synchronous work (its signals' receivers, DRF's
    checks, a sync view): an idle long-lived one, lent for the request.

    Django's handler starts a thread per request at its first synchronous call and joins it
    at its end; entered in asgiref's public ``ThreadSensitiveContext(executor=...)``, Django's
    own context inside uses the lent thread instead. Starting and joining a thread per
    request cost about 1 ms of CPU per streamed request under load (bench/README.md). A
    thread keeps its own database connection objects between requests, as a WSGI server's
    threads do; Django's ``request_finished`` closes what a request opened.
    """

    MAX_IDLE = 256

    def __init__(self) -> None:
        self._idle: list[ThreadPoolExecutor] = []  # touched by the event loop only

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._idle:
            executor = self._idle.pop()
        else:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clubos-request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await django_application(scope, receive, send)
        finally:
            if len(self._idle) < self.MAX_IDLE:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)


served = LentThreads()

# Every process that serves requests trains the router and opens its upstream connection
# before it takes traffic (clubos.warmup), at the lifespan's start-up.
from clubos.monitoring import metrics_refresh_start, metrics_refresh_stop  # noqa: E402
from clubos.warmup import warm_up, warm_up_async  # noqa: E402
from config.db_async import db_async_close  # noqa: E402
from config.llm import openai_async_channel_close  # noqa: E402
from config.threads import in_thread  # noqa: E402


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "lifespan":
        await served(scope, receive, send)
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # The database work in a thread (a server may import this module on its loop);
            # then the loop's own channel to the model's server and its database pool.
            await in_thread(warm_up)
            await warm_up_async()
            metrics_refresh_start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await metrics_refresh_stop()
            await openai_async_channel_close()
            await db_async_close()
            await send({"type": "lifespan.shutdown.complete"})
            return
