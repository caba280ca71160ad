"""Synchronous work awaited from the event loop: the ORM, the shared cache's blocking client,
the OpenAI SDK."""

from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.db import connection


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
