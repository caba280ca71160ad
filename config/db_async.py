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
import logging
import weakref
from collections.abc import Coroutine, Sequence
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

logger = logging.getLogger(__name__)

_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool]" = (
    weakref.WeakKeyDictionary()
)

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
        # As the sync pool: a full pool or a database out of reach is a 503 in seconds.
        timeout=settings.DATABASE_POOL_TIMEOUT_S,
        reconnect_timeout=settings.DATABASE_POOL_RECONNECT_TIMEOUT_S,
        # After an outage every idle connection is dead; a statement that finds one retries
        # on a fresh connection (db_async_execute) instead of a check on every checkout.
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


class DatabaseTimeout(psycopg.OperationalError):
    """The database did not answer in time (a network partition, a server that hangs)."""


async def db_async_execute(
    pool: AsyncConnectionPool, sql: str, params: Sequence[Any], *, timeout_s: float | None = None
) -> int:
    """Run one statement in its own transaction; returns the number of rows it touched.

    A pooled connection the database dropped (it restarted, or was out of reach while the
    connection sat idle) fails at once; the statement is then sent once more, on a fresh
    connection (psycopg's pool discards the broken one). That costs nothing while the
    database is up, where a check on every checkout would cost each statement a round trip.

    The whole is bounded by ``timeout_s`` (default ``DATABASE_STATEMENT_TIMEOUT_S``): a
    database that stops answering raises ``DatabaseTimeout`` then, not a request that hangs.
    """
    timeout_s = settings.DATABASE_STATEMENT_TIMEOUT_S if timeout_s is None else timeout_s
    return await _bounded(_execute(pool, sql, params), timeout_s)


async def _execute(pool: AsyncConnectionPool, sql: str, params: Sequence[Any]) -> int:
    for attempt in range(2):
        conn: AsyncConnection[Any] | None = None
        try:
            async with pool.connection(timeout=None if attempt == 0 else RETRY_CHECKOUT_S) as conn:
                cursor = await conn.execute(sql, params)
                return cursor.rowcount
        except psycopg.OperationalError:
            if attempt == 0 and conn is not None and conn.broken:
                logger.info("a pooled connection was dead; the statement goes again")
                # The idle connections that sat through the same outage are dead too:
                # replaced now, so that the retry (and the next requests) get live ones.
                await pool.check()
                continue
            raise
    raise AssertionError("unreachable")


# The retry after a dead connection waits this long for a live one: the database is back
# (the check replaced the dead ones at once) or the request is answered 503.
RETRY_CHECKOUT_S = 1.0

# Statements given up on, still being cancelled (a task with no reference could be collected).
_giving_up: set[asyncio.Task[Any]] = set()


async def _bounded[T](work: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """``work``, or ``DatabaseTimeout`` after ``timeout_s``. Not ``asyncio.timeout``: psycopg
    answers a cancelled statement by asking the server to cancel it, up to 5 s more when the
    server cannot be reached. That goes on in the background; the request does not wait."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        _giving_up.add(task)
        task.add_done_callback(_given_up)
        raise DatabaseTimeout(f"the database did not answer within {timeout_s:g} s")
    return task.result()


def _given_up(task: asyncio.Task[Any]) -> None:
    _giving_up.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: it was reported as the timeout already


async def db_async_close() -> None:
    """Close the running loop's pool (the server's shutdown)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()


def db_async_pools() -> list[AsyncConnectionPool]:
    """Every event loop's open pool in this process (one per server worker): for the
    metrics, read at scrape time."""
    return [pool for pool in list(_pools.values()) if not pool.closed]
