"""The event loop's own connections to PostgreSQL, for the request log's two writes.

A request runs on the server's event loop. Django's ORM is synchronous, so each of its
writes would be a trip to a thread and back, the thread and the loop each waiting for the
GIL behind every other stream the worker carries (bench/README.md). psycopg's async pool
sends the statement from the loop itself. The statement is still Django's: the ORM compiles
it (``requestlogs.rows``); this module only executes it, with the connection settings
Django uses.

One pool per event loop (a connection belongs to the loop that opened it; a server worker
has one), opened at the server's start (``clubos.warmup.warm_up_async``) and closed at its
shutdown. Without one (SQLite, ``DATABASE_ASYNC_POOL_MAX=0``, a loop that never opened
it) the ORM writes from a thread.
"""

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg_pool import AsyncConnectionPool

_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool]" = (
    weakref.WeakKeyDictionary()
)

# A full pool means PostgreSQL is already the bottleneck; waiting longer than the sync
# pool does would only hide it.
POOL_TIMEOUT_S = 10.0
POOL_MIN = 4


def db_async_supported() -> bool:
    return (
        connections[DEFAULT_DB_ALIAS].vendor == "postgresql"
        and settings.DATABASE_ASYNC_POOL_MAX > 0
    )


async def db_async_open(*, timeout_s: float) -> None:
    """Open the running loop's pool and wait up to ``timeout_s`` for its first connection
    (raising ``PoolTimeout`` if it is not there by then).

    The pool stays open either way and keeps connecting in the background: a database
    that comes up after the server costs its first writes a wait, not the pool.
    """
    if not db_async_supported():
        return
    loop = asyncio.get_running_loop()
    if loop in _pools:
        return
    params = connections[DEFAULT_DB_ALIAS].get_connection_params()
    params.pop("cursor_factory")  # Django's is a sync cursor
    params["autocommit"] = True  # each write is its own transaction, committed at once
    # The same statement every request: prepared on first use, PostgreSQL parses and plans
    # it once per connection (settings.DATABASE_ASYNC_PREPARE says why it can be off).
    params["prepare_threshold"] = 0 if settings.DATABASE_ASYNC_PREPARE else None
    pool = AsyncConnectionPool(
        kwargs=params,
        # Opened at start-up rather than by the first burst of requests, each of which
        # would wait for a new connection (tens of ms) while the pool grows.
        min_size=min(POOL_MIN, settings.DATABASE_ASYNC_POOL_MAX),
        max_size=settings.DATABASE_ASYNC_POOL_MAX,
        timeout=POOL_TIMEOUT_S,
        name="clubos-event-loop",
        open=False,
    )
    _pools[loop] = pool
    await pool.open()
    # psycopg's own wait(timeout) would close the pool on a timeout.
    async with pool.connection(timeout=timeout_s):
        pass


def db_async_pool() -> AsyncConnectionPool | None:
    """The running loop's open pool, or None: then use the ORM in a thread."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    pool = _pools.get(loop)
    return pool if pool is not None and not pool.closed else None


async def db_async_execute(pool: AsyncConnectionPool, sql: str, params: Sequence[Any]) -> int:
    """Run one statement in its own transaction; returns the number of rows it touched."""
    async with pool.connection() as conn:
        cursor = await conn.execute(sql, params)
        return cursor.rowcount


async def db_async_close() -> None:
    """Close the running loop's pool (the server's shutdown)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()
