"""The request log's two writes: the row's INSERT when a request is accepted, and its one
UPDATE of the final columns when it is over. Every row of the request log is written here.

Both are the ORM's own statements: ``log.save(force_insert=True)`` and
``log.save(update_fields=FINAL_COLUMNS)``. Under the server, on PostgreSQL, they go out from
the event loop on its own connection pool (``config.db_async``): the ORM compiles each SQL
once and the parameters are prepared as its compiler prepares them (a test holds both to
the ORM's output). That saves each request two trips to a thread and back, each waiting for
the GIL behind every other stream the worker carries (bench/README.md). Without that pool
(SQLite, a loop the server did not start, ``DATABASE_ASYNC_POOL_MAX=0``) the ORM writes the
row from a thread. A final UPDATE the database did not take is retried in the background.
"""

import asyncio
import functools
import logging
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections
from django.db.models import Field
from django.db.models.sql.subqueries import InsertQuery, UpdateQuery
from django.utils import timezone

from config.db_async import DatabaseTimeout, db_async_execute, db_async_pool
from config.threads import in_thread
from requestlogs.models import RequestLog, RequestStatus

logger = logging.getLogger(__name__)

# What a request learns, written by its final UPDATE.
FINAL_COLUMNS = (
    *("route", "routing_source", "confidence", "possible_emergency", "status", "answer"),
    *("error", "backend"),
    *("model", "tokens_in", "tokens_out", "upstream_calls", "cached", "routing_ms"),
    *("ttft_ms", "assistant_ms", "total_ms", "finished_at"),
)


async def request_log_insert(log: RequestLog) -> None:
    """The first write: the new row, committed at once. Raises if it could not be written."""
    pool = db_async_pool()
    if pool is None:
        await in_thread(log.save, force_insert=True)
        return
    try:
        inserted = await db_async_execute(pool, *_statement(log, insert=True))
    except DatabaseTimeout:
        # Sent, but not confirmed in time: the row may still land once the database answers.
        # The request is refused (503); should its row appear, it is finished as such.
        log.status = RequestStatus.ERROR
        log.error = "the database did not confirm this request in time; it was refused (503)"
        log.finished_at = timezone.now()
        _retry_in_background(log, row_expected=False)
        raise
    except psycopg.errors.UniqueViolation:
        # The key is a fresh UUID: only our own first try, committed on a connection that
        # broke before its answer came back, can hold it.
        inserted = 1
    if inserted != 1:
        raise RuntimeError(f"request {log.pk}: the INSERT wrote {inserted} rows")
    log._state.adding = False
    log._state.db = DEFAULT_DB_ALIAS


async def request_log_finish(log: RequestLog) -> bool:
    """The second write: the row's final columns, as ``log`` has them now. True once written.

    Should the database not take it (an outage), the person still has their answer and the
    write is retried in the background with backoff (``FINISH_RETRY_DELAYS_S``, about half a
    minute in all) rather than holding their response; False then. A row no retry could
    finish stays ``received`` until the abandoned-request sweep marks it.
    """
    try:
        await _finish_once(log)
        return True
    except Exception as exc:
        route_gone = isinstance(exc, IntegrityError | psycopg.errors.ForeignKeyViolation)
        if route_gone and log.route_id is not None:
            # The route was deleted while its request was being answered (or this process's
            # catalog still named a route deleted a moment ago): keep the answer and the
            # timings, without the route, rather than a row that no retry could ever finish.
            logger.warning(
                "request %s: route %s no longer exists (%s); its row is finished without it",
                log.pk,
                log.route_id,
                exc,
            )
            log.route = None
            return await request_log_finish(log)
        logger.warning(
            "request %s: its final write failed (%s: %s); retrying in the background",
            log.pk,
            type(exc).__name__,
            exc,
        )
    _retry_in_background(log, row_expected=True)
    return False


def _retry_in_background(log: RequestLog, *, row_expected: bool) -> None:
    task = asyncio.create_task(_finish_retried(log, row_expected), name=f"finish-{log.pk}")
    _retrying.add(task)
    task.add_done_callback(_retrying.discard)


# Waits between the final write's retries, seconds: covers an outage of ~30 s.
FINISH_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
# The retries in flight (a task with no reference could be collected before it ends).
_retrying: set[asyncio.Task[None]] = set()


async def _finish_once(log: RequestLog) -> None:
    pool = db_async_pool()
    if pool is not None:
        if await db_async_execute(pool, *_statement(log, insert=False)) == 1:
            return
        logger.warning("request %s: the event loop's UPDATE found no row", log.pk)
    # No pool of the loop's own, or no row by the pool's statement: the ORM's own UPDATE,
    # which raises if it finds no row either.
    await in_thread(log.save, update_fields=FINAL_COLUMNS)


async def _finish_retried(log: RequestLog, row_expected: bool) -> None:
    for delay in FINISH_RETRY_DELAYS_S:
        await asyncio.sleep(delay)
        try:
            await _finish_once(log)
        except Exception as exc:
            logger.info("request %s: final write still failing: %s", log.pk, exc)
            continue
        logger.info("request %s: final write done on a retry", log.pk)
        return
    if row_expected:
        logger.error(
            "request %s: its final write failed %d times; the abandoned sweep will mark it",
            log.pk,
            len(FINISH_RETRY_DELAYS_S) + 1,
        )
    else:
        logger.info("request %s: its unconfirmed row never appeared", log.pk)


async def request_log_finish_retries_wait() -> None:
    """Wait for the final writes still being retried (a test's, or the server's shutdown)."""
    while _retrying:
        await asyncio.gather(*_retrying, return_exceptions=True)


def orm_statement(log: RequestLog, *, insert: bool) -> tuple[str, tuple[Any, ...]]:
    """The ORM's own SQL and parameters for the row's INSERT or final UPDATE."""
    if insert:
        query = InsertQuery(RequestLog)
        query.insert_values(_fields(insert=True), [log])
        [(sql, params)] = query.get_compiler(DEFAULT_DB_ALIAS).as_sql()
        return sql, tuple(params)
    # As Model.save(update_fields=...) builds it: the row by its key, the fields' values.
    update = RequestLog.objects.filter(pk=log.pk).query.chain(UpdateQuery)
    assert isinstance(update, UpdateQuery)
    update.add_update_fields([(f, None, f.pre_save(log, False)) for f in _fields(insert=False)])
    sql, params = update.get_compiler(DEFAULT_DB_ALIAS).as_sql()
    return sql, tuple(params)


_SQL: dict[bool, str] = {}


def _statement(log: RequestLog, *, insert: bool) -> tuple[str, tuple[Any, ...]]:
    """``orm_statement``, its SQL compiled by the ORM once (compiling took 0.5 ms of the
    event loop per request at 50 clients); the parameters prepared as the compiler prepares
    them (``pre_save``, then ``get_db_prep_save``; the key's ``get_db_prep_value``)."""
    sql = _SQL.get(insert)
    if sql is None:
        sql, params = orm_statement(log, insert=insert)
        _SQL[insert] = sql
        return sql, params
    db = connections[DEFAULT_DB_ALIAS]
    params = tuple(
        f.get_db_prep_save(f.pre_save(log, insert), connection=db) for f in _fields(insert=insert)
    )
    if insert:
        return sql, params
    return sql, (*params, RequestLog._meta.pk.get_db_prep_value(log.pk, connection=db))


@functools.cache
def _fields(*, insert: bool) -> "list[Field[Any, Any]]":
    if insert:
        # What Model._save_table inserts: the local concrete fields, none generated.
        return [f for f in RequestLog._meta.local_concrete_fields if not f.generated]
    return [RequestLog._meta.get_field(name) for name in FINAL_COLUMNS]  # type: ignore[misc]
