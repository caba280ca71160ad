"""The request log's two writes: the row's INSERT when a request is accepted, and its one
UPDATE when it is over. Every row of the request log is written here.

Both are the ORM's statements. Under the server, on PostgreSQL, they go out from the event
loop on its own connection pool (``config.db_async``): the ORM compiles each statement once
and the parameters are prepared as its compiler prepares them (a test holds both to the
ORM's output). That saves each request two trips to a thread and back, each waiting for the
GIL behind every other stream the worker carries (bench/README.md). Without that pool
(SQLite, a loop the server did not start, ``DATABASE_ASYNC_POOL_MAX=0``) the ORM writes the
row from a thread.
"""

import functools
import logging
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Field
from django.db.models.sql.subqueries import InsertQuery, UpdateQuery
from django.utils import timezone

from config.db_async import db_async_execute, db_async_pool
from config.threads import in_thread
from requestlogs.models import RequestLog

logger = logging.getLogger(__name__)


async def request_log_insert(log: RequestLog) -> None:
    """The first write: the new row, committed at once. Raises if it could not be written."""
    pool = db_async_pool()
    if pool is None:
        await in_thread(log.save, force_insert=True)
        return
    inserted = await db_async_execute(pool, *_insert_statement(log))
    if inserted != 1:
        raise RuntimeError(f"request {log.pk}: the INSERT wrote {inserted} rows")
    log._state.adding = False
    log._state.db = DEFAULT_DB_ALIAS


async def request_log_finish(log: RequestLog, fields: dict[str, Any]) -> None:
    """The second write: one UPDATE with everything the request learnt, ``fields`` set on
    ``log`` too. Should the event loop's connection fail, the ORM writes it from a thread."""
    fields["finished_at"] = timezone.now()
    for name, value in fields.items():
        setattr(log, name, value)
    pool = db_async_pool()
    if pool is not None:
        try:
            if await db_async_execute(pool, *_update_statement(log, fields)) == 1:
                return
            logger.warning("request %s: the event loop's UPDATE found no row", log.pk)
        except Exception:
            logger.warning("request %s: the event loop's UPDATE failed", log.pk, exc_info=True)
    await in_thread(_update_orm, log, fields)


def _update_orm(log: RequestLog, fields: dict[str, Any]) -> None:
    RequestLog.objects.filter(pk=log.pk).update(**fields)


# --- The ORM's statements, compiled once ------------------------------------------------


def _update_compiled(log: RequestLog, fields: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """``RequestLog.objects.filter(pk=log.pk).update(**fields)``'s SQL and parameters."""
    query = RequestLog.objects.filter(pk=log.pk).query.chain(UpdateQuery)
    assert isinstance(query, UpdateQuery)
    query.add_update_values(fields)
    sql, params = query.get_compiler(DEFAULT_DB_ALIAS).as_sql()
    return sql, tuple(params)


_UPDATE_SQL: dict[tuple[str, ...], str] = {}


def _update_statement(log: RequestLog, fields: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """``_update_compiled``, its SQL compiled by the ORM once per set of columns; the
    parameters prepared as the compiler prepares them (``get_db_prep_save`` for each value,
    the primary key's ``get_db_prep_value``)."""
    names = tuple(fields)
    sql = _UPDATE_SQL.get(names)
    if sql is None:
        sql, params = _update_compiled(log, fields)
        _UPDATE_SQL[names] = sql
        return sql, params
    db = connections[DEFAULT_DB_ALIAS]
    columns = _request_log_columns()
    return sql, (
        *(columns[name].get_db_prep_save(fields[name], connection=db) for name in names),
        columns["id"].get_db_prep_value(log.pk, connection=db),
    )


def _insert_compiled(log: RequestLog) -> tuple[str, tuple[Any, ...]]:
    """``log.save(force_insert=True)``'s SQL and parameters."""
    query = InsertQuery(RequestLog)
    query.insert_values(_request_log_insert_fields(), [log])
    [(sql, params)] = query.get_compiler(DEFAULT_DB_ALIAS).as_sql()
    return sql, tuple(params)


_INSERT_SQL: list[str] = []


def _insert_statement(log: RequestLog) -> tuple[str, tuple[Any, ...]]:
    """``_insert_compiled``, its SQL compiled by the ORM once; the parameters prepared as
    the compiler prepares them (``pre_save``, then ``get_db_prep_save``)."""
    if not _INSERT_SQL:
        sql, params = _insert_compiled(log)
        _INSERT_SQL.append(sql)
        return sql, params
    db = connections[DEFAULT_DB_ALIAS]
    return _INSERT_SQL[0], tuple(
        f.get_db_prep_save(f.pre_save(log, True), connection=db)
        for f in _request_log_insert_fields()
    )


@functools.cache
def _request_log_insert_fields() -> "list[Field[Any, Any]]":
    # What Model._save_table inserts: the local concrete fields, none generated.
    return [f for f in RequestLog._meta.local_concrete_fields if not f.generated]


@functools.cache
def _request_log_columns() -> "dict[str, Field[Any, Any]]":
    return {f.attname: f for f in RequestLog._meta.concrete_fields}
