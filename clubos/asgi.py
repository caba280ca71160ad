"""The ASGI application: Django's own ``ASGIHandler``, plus the lifespan events a server like
gunicorn's ``asgi`` worker or uvicorn sends, which Django itself does not handle."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clubos.settings")

django_application = get_asgi_application()

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
            # The event loop exists now: its channel to the model's server and its database
            # pool can connect.
            await warm_up_async()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await openai_async_channel_close()
            await db_async_close()
            await send({"type": "lifespan.shutdown.complete"})
            return
