"""The request log's two writes (``requestlogs.rows``): the ORM's own statements, sent from
the event loop's pool on PostgreSQL, and never a row left ``received``."""

import asyncio
import dataclasses

import pytest
from django.db import DataError, connection
from django.utils import timezone

import requestlogs.pipeline as pipeline
from config.db_async import db_async_close, db_async_open, db_async_pool
from config.services import system_config_update
from config.threads import to_the_end
from requestlogs.models import RequestLog, RequestStatus
from requestlogs.pipeline import AnswerDelta, RequestDone, request_answer, request_start
from requestlogs.rows import _statement, orm_statement, request_log_finish
from routing.models import Route
from tests.requestlogs.factories import RequestLogFactory
from tests.requestlogs.test_pipeline import on_loop, refreshed, validated
from tests.routing.factories import RouteFactory

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the event loop's pool is PostgreSQL's"
)


def finished(log: RequestLog, **changes: object) -> RequestLog:
    values: dict[str, object] = {
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
    for name, value in (values | changes).items():
        setattr(log, name, value)
    return log


@pytest.mark.django_db
def test_the_remembered_statements_are_what_the_orm_compiles():
    first, second = RequestLogFactory(), RequestLogFactory()
    _statement(finished(first), insert=False)  # compiles and remembers the SQL
    for log in (finished(second), finished(second, status=RequestStatus.ERROR, answer="")):
        assert _statement(log, insert=False) == orm_statement(log, insert=False)
    new, newer = RequestLogFactory.build(), RequestLogFactory.build(location="Halifax")
    _statement(new, insert=True)
    assert _statement(newer, insert=True) == orm_statement(newer, insert=True)


@pytest.mark.django_db(transaction=True)
def test_a_route_deleted_while_its_request_was_answered_still_leaves_the_answer_on_the_row():
    log = RequestLogFactory()
    route = RouteFactory()
    log.route = route
    Route.objects.filter(pk=route.pk).delete()  # an admin deleted it while the answer streamed

    assert asyncio.run(request_log_finish(finished(log, answer="Reboot it."))) is True

    row = refreshed(log)
    assert row.status == RequestStatus.OK and row.answer == "Reboot it."
    assert row.route is None and row.finished_at is not None


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

    def test_both_writes_go_out_on_the_loops_connection(self, openai_upstream, server_loop, pool):
        openai_upstream.configure(ttft_s=0.05, latency_s=0.2, answer_text="Reboot the unit.")
        used_before = pool.get_stats().get("requests_num", 0)

        request = validated("TrackMan frozen in bay 3", "tech")

        async def go():
            run = await request_start(request=request)
            return [event async for event in run.events()]

        out = on_loop(server_loop, go())

        assert isinstance(out[-1], RequestDone) and out[-1].log.status == RequestStatus.OK
        assert "".join(e.text for e in out if isinstance(e, AnswerDelta)) == "Reboot the unit."
        assert pool.get_stats().get("requests_num", 0) == used_before + 2  # INSERT, UPDATE
        row = refreshed(out[-1].log)
        assert row.status == RequestStatus.OK and row.answer == "Reboot the unit."
        assert row.route.slug == "tech" and row.routing_source == "manual"
        assert row.finished_at is not None and row.total_ms > row.assistant_ms > 0
        assert row.tokens_out and row.upstream_calls == 1

    def test_a_client_gone_during_the_final_step_still_leaves_the_row_final(
        self, openai_upstream, server_loop, pool, monkeypatch
    ):
        system_config_update(response_cache_enabled=True)
        openai_upstream.configure(ttft_s=0.05, latency_s=0.1, answer_text="Reboot the unit.")
        putting = asyncio.Event()

        async def slow_cache_put(**kwargs) -> None:  # Redis slow to answer
            putting.set()
            await asyncio.sleep(0.3)

        monkeypatch.setattr(pipeline, "response_cache_put", slow_cache_put)
        request = validated("TrackMan frozen in bay 3", route="tech")

        async def read_then_go_away() -> RequestLog:
            run = await request_start(request=request)

            async def read() -> None:
                async for _ in run.events():
                    pass

            task = asyncio.ensure_future(read())
            await putting.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return run.log

        row = refreshed(on_loop(server_loop, read_then_go_away()))
        assert row.status == RequestStatus.OK and row.answer == "Reboot the unit."

    def test_if_the_loops_connection_fails_the_orm_still_finishes_the_row(self, server_loop, pool):
        log = RequestLogFactory()
        on_loop(server_loop, pool.close())

        on_loop(server_loop, request_log_finish(finished(log, answer="Reboot it.")))

        row = refreshed(log)
        assert row.status == RequestStatus.OK and row.answer == "Reboot it."
        assert row.finished_at is not None

    def test_a_route_deleted_mid_answer_is_dropped_from_the_loops_update(self, server_loop, pool):
        log = RequestLogFactory()
        route = RouteFactory()
        log.route = route
        Route.objects.filter(pk=route.pk).delete()

        assert on_loop(server_loop, request_log_finish(finished(log, answer="Reboot it.")))

        row = refreshed(log)
        assert row.answer == "Reboot it." and row.route is None

    def test_a_row_that_cannot_be_written_calls_no_model(self, openai_upstream, server_loop):
        # Past validation (which refuses it), a NUL is text PostgreSQL cannot store.
        request = dataclasses.replace(
            validated("TrackMan frozen in bay 3", "tech"), text="TrackMan\x00frozen"
        )

        async def submit() -> None:
            with pytest.raises(DataError, match="NUL"):
                await request_answer(request=request)

        on_loop(server_loop, submit())
        assert not RequestLog.objects.exists()
        assert openai_upstream.calls == []


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

    assert on_loop(server_loop, open_then_look())
