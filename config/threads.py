"""Work awaited from the event loop: synchronous work (the ORM, the shared cache's blocking
client, the OpenAI SDK) in a thread, and work that must finish even if its request is
cancelled."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from django.db import connection

logger = logging.getLogger(__name__)


def db_connection_release() -> None:
    """Give this thread's pooled database connection back to the pool now.

    A request spends seconds on the model and a millisecond on the database; a connection
    held for the whole wait would cap concurrent requests at the pool's size. A connection
    inside a transaction (a test's) is left alone, and so is a persistent one
    (``DATABASE_POOL=0``): closing it would only mean reconnecting.
    """
    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()


async def in_thread[**P, R](fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``fn(*args, **kwargs)`` in the request's thread (Django's thread-sensitive executor),
    its pooled database connection given back when it returns."""

    def call() -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            db_connection_release()

    return await sync_to_async(call)()


async def to_the_end[T](work: Awaitable[T]) -> T:
    """Await ``work`` to its end even if the task awaiting it is cancelled meanwhile (the
    client went away, the server gave up on the request): a request's write or its clean-up
    cut off half-way would leave its row unfinished. The cancellation is passed on once the work is
    done."""
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
