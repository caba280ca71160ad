"""The request log's final write from the event loop (``config.db_async``), PostgreSQL only:
the same row as the ORM would write, never a row left ``received``."""

import asyncio
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from clubos.serving import to_the_end
from config.db_async import db_async_close, db_async_open, db_async_pool
from config.services import system_config_update
from requestlogs.models import RequestLog, RequestStatus
from requestlogs.services import (
    AnswerDelta,
    RequestDone,
    RequestRun,
    _finish_async,
    _update_compiled,
    _update_statement,
    request_log_create,
    request_log_new,
    request_process_async,
    request_validate,
)
from tests.requestlogs.test_pipeline import drain, refreshed

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the event loop's pool is PostgreSQL's"
)


def final_fields(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "route_id": None,
        "routing_source": "local",
        "confidence": 0.91,
        "upstream_calls": 1,
        "status": RequestStatus.OK,
        "tokens_in": 12,
        "tokens_out": None,
        "answer": "Reboot the unit. 100% of the time it works.",
        "assistant_ms": 1500.5,
        "total_ms": 1502.25,
        "finished_at": timezone.now(),
    }
    return fields | changes


@pytest.mark.django_db
@pytest.mark.usefixtures("routes")
def test_the_remembered_statement_is_what_the_orm_compiles():
    request = request_validate(text="TrackMan frozen in bay 3", route="tech", user=None)
    first, second = request_log_create(request=request), request_log_create(request=request)
    _update_statement(first, final_fields())  # compiles and remembers the SQL
    for fields in (final_fields(), final_fields(status=RequestStatus.ERROR, answer="")):
        assert _update_statement(second, fields) == _update_compiled(second, fields)


def test_a_write_runs_to_its_end_when_the_client_goes_away_during_it():
    written: list[str] = []

    async def write() -> None:
        await asyncio.sleep(0.05)
        written.append("row")

    async def scenario() -> None:
        task = asyncio.ensure_future(to_the_end(write()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert written == ["row"]

    asyncio.run(scenario())


@on_postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("routes")
class TestOnTheLoopsOwnConnection:
    @pytest.fixture
    def pool(self, server_loop_db_pool):
        return server_loop_db_pool

    def test_a_streamed_answer_is_finished_by_the_loops_connection(
        self, openai_upstream, server_loop, pool
    ):
        openai_upstream.configure(ttft_s=0.05, latency_s=0.2, answer_text="Reboot the unit.")
        request = request_validate(text="TrackMan frozen in bay 3", route="tech", user=None)
        log = request_log_new(request=request)
        used_before = pool.get_stats().get("requests_num", 0)

        out = drain(request_process_async(request=request, log=log, loop=server_loop), server_loop)

        assert isinstance(out[-1], RequestDone) and out[-1].log.status == RequestStatus.OK
        assert "".join(e.text for e in out if isinstance(e, AnswerDelta)) == "Reboot the unit."
        assert pool.get_stats().get("requests_num", 0) == used_before + 1
        row = refreshed(log)
        assert row.status == RequestStatus.OK and row.answer == "Reboot the unit."
        assert row.route.slug == "tech" and row.routing_source == "manual"
        assert row.finished_at is not None and row.total_ms > row.assistant_ms > 0
        assert row.tokens_out and row.upstream_calls == 1

    def test_a_client_gone_during_the_final_step_still_leaves_the_row_final(
        self, openai_upstream, server_loop, pool, monkeypatch
    ):
        system_config_update(response_cache_enabled=True)
        openai_upstream.configure(ttft_s=0.05, latency_s=0.1, answer_text="Reboot the unit.")
        cache_put_started = threading.Event()

        def slow_cache_put(run: RequestRun) -> None:  # Redis slow to answer
            cache_put_started.set()
            time.sleep(0.3)

        monkeypatch.setattr(RequestRun, "cache_answer", slow_cache_put)
        request = request_validate(text="TrackMan frozen in bay 3", route="tech", user=None)
        log = request_log_new(request=request)
        events = request_process_async(request=request, log=log, loop=server_loop)

        async def read_then_go_away() -> None:
            async def read() -> None:
                async for _ in events:
                    pass

            task = asyncio.ensure_future(read())
            while not cache_put_started.is_set():
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run_coroutine_threadsafe(read_then_go_away(), server_loop).result(10)
        row = refreshed(log)
        assert row.status == RequestStatus.OK and row.answer == "Reboot the unit."

    def test_if_the_loops_connection_fails_the_orm_still_finishes_the_row(self, server_loop, pool):
        request = request_validate(text="TrackMan frozen in bay 3", route="tech", user=None)
        log = request_log_create(request=request)
        asyncio.run_coroutine_threadsafe(pool.close(), server_loop).result(10)

        fields = final_fields(route_id=None, status=RequestStatus.OK, answer="Reboot it.")
        asyncio.run_coroutine_threadsafe(
            _finish_async(pool, log, fields, time.perf_counter()), server_loop
        ).result(15)

        row = refreshed(log)
        assert row.status == RequestStatus.OK and row.answer == "Reboot it."
        assert isinstance(row, RequestLog) and row.finished_at is not None


@on_postgresql
def test_a_database_not_there_at_start_leaves_the_pool_open_to_retry(monkeypatch, server_loop):
    from psycopg_pool import PoolTimeout

    monkeypatch.setitem(connection.settings_dict, "PORT", "1")  # nothing listens there

    async def open_then_look():
        with pytest.raises(PoolTimeout):
            await db_async_open(timeout_s=0.3)
        pool = db_async_pool()
        try:
            return pool is not None and not pool.closed
        finally:
            await db_async_close()

    assert asyncio.run_coroutine_threadsafe(open_then_look(), server_loop).result(10)
