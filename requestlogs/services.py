"""One request end to end, and the other writes to the request log.

The lifecycle (DESIGN.md): validate -> config (cached) -> insert the log row, committed
at once -> route -> response cache -> assistant, streamed -> update the row. Two small
writes per request; nothing fire-and-forget. Whatever happens after the insert - an
upstream failure, the client going away - ends with the row in a final status.

The row is always written before any wait on a model and before anything is sent. On
the event loop (ASGI) a locally routed request writes it just after routing, while the
answer's request is already on its way, so the INSERT costs the person no time; a
failure before the write still leaves a row, in its final state.
"""

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Field
from django.db.models.sql.subqueries import InsertQuery, UpdateQuery
from django.utils import timezone
from psycopg_pool import AsyncConnectionPool

from assistants.backends import AssistantError, Completion, FailureKind, StreamEvent, TextDelta
from assistants.backends.offline import knowledge_best
from assistants.services import (
    AssistantCall,
    response_cache_get,
    response_cache_put,
    response_cache_usable,
)
from clubos.serving import to_the_end
from config.db_async import db_async_execute, db_async_pool
from config.selectors import ConfigSnapshot, system_config_get
from requestlogs.models import Channel, RequestLog, RequestStatus, RoutingSource
from requestlogs.slack import AlertKind, slack_alert_submit, slack_alerts_wait
from routing.models import Route
from routing.router import AUTO, route_decide, routing_ready
from routing.selectors import RouteCatalog, RouteSnapshot, route_catalog_get
from routing.services import route_utterance_add
from routing.strategies import RouteDecision

logger = logging.getLogger(__name__)

TEXT_MAX_CHARS = 4000
LOCATION_MAX_CHARS = 100
COMMENT_MAX_CHARS = 2000
SLACK_WAIT_S = 2.0


# --- Events a request produces while it runs -------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteChosen:
    log: RequestLog
    decision: RouteDecision


@dataclass(frozen=True, slots=True)
class AnswerDelta:
    text: str


@dataclass(frozen=True, slots=True)
class RequestDone:
    """The row is final. ``failed`` when the assistant could not answer (status timeout/error)."""

    log: RequestLog
    failed: bool = False
    catalog: RouteCatalog | None = None
    """The routes the request was served with (names its route without a cache read)."""


PipelineEvent = RouteChosen | AnswerDelta | RequestDone


# --- Validation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestInput:
    text: str
    route: str
    location: str
    user: User | None
    channel: str
    config: ConfigSnapshot
    catalog: RouteCatalog
    started: float = field(default_factory=time.perf_counter)


def request_validate(
    *,
    text: Any,
    route: Any = AUTO,
    location: Any = "",
    user: User | AnonymousUser | None,
    channel: str = Channel.API,
    started: float | None = None,
    config: ConfigSnapshot | None = None,
    catalog: RouteCatalog | None = None,
) -> RequestInput:
    """Check a request before anything is written; raises ValidationError with a message per field.

    ``config`` and ``catalog``, when the caller has them, are used instead of the selectors'.
    """
    started = time.perf_counter() if started is None else started
    errors: dict[str, list[str]] = {}
    clean_text = text.strip() if isinstance(text, str) else None
    if clean_text is None:
        errors["text"] = ["Describe what is going on (text is required)."]
    elif not clean_text:
        errors["text"] = ["Describe what is going on: the text is empty."]
    elif len(clean_text) > TEXT_MAX_CHARS:
        errors["text"] = [f"Keep it under {TEXT_MAX_CHARS} characters (this is {len(clean_text)})."]

    config = system_config_get() if config is None else config
    catalog = route_catalog_get() if catalog is None else catalog
    clean_route = (route if isinstance(route, str) else "").strip().lower() or AUTO
    if route is not None and not isinstance(route, str):
        errors["route"] = ["Route must be 'auto' or a route's slug."]
    elif clean_route != AUTO:
        chosen = catalog.get(clean_route)
        if chosen is None or not chosen.enabled:
            choices = ", ".join(["auto", *(r.slug for r in catalog.enabled)])
            errors["route"] = [
                f"Unknown or disabled route {clean_route!r}. Choose one of: {choices}."
            ]

    if location is None:
        location = ""
    if not isinstance(location, str):
        errors["location"] = ["Location must be text."]
        location = ""
    clean_location = " ".join(location.split())
    if len(clean_location) > LOCATION_MAX_CHARS:
        errors["location"] = [f"Keep the location under {LOCATION_MAX_CHARS} characters."]

    if errors:
        raise ValidationError(errors)
    assert clean_text is not None
    return RequestInput(
        text=clean_text,
        route=clean_route,
        location=clean_location,
        user=user if user is not None and user.is_authenticated else None,
        channel=channel,
        config=config,
        catalog=catalog,
        started=started,
    )


# --- The pipeline ---------------------------------------------------------------------


def request_log_new(*, request: RequestInput) -> RequestLog:
    """The request's row with its own id, not yet written: ``RequestRun.logged`` inserts it."""
    return RequestLog(
        created_at=timezone.now(),
        user=request.user,
        channel=request.channel,
        location=request.location,
        text=request.text,
        requested_route=request.route,
    )


def request_log_create(*, request: RequestInput) -> RequestLog:
    """Insert the row, status ``received``, committed at once (the first of two writes).

    A single INSERT in autocommit mode: durable before any routing or model work starts.
    """
    log = request_log_new(request=request)
    log.save(force_insert=True)
    return log


def _elapsed_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def _failure_message(route: RouteSnapshot, exc: AssistantError, text: str) -> str:
    """What the person sees when the model fails: what happened, and what to do now."""
    if exc.kind is FailureKind.TIMEOUT:
        head = "The assistant did not answer in time."
    elif exc.kind is FailureKind.UNAVAILABLE:
        head = "The assistant is unavailable right now."
    else:
        head = "The assistant could not answer just now."
    lines = [head + " A manager has been alerted; you can also press Escalate."]
    procedures = knowledge_best(route.knowledge, text)
    if procedures:
        lines.append("Meanwhile, the standard procedure on file:")
        lines += [f"**{p.title}**\n{p.body.strip()}" for p in procedures]
    return "\n\n".join(lines)


def db_connection_release() -> None:
    """Give a pooled database connection back while this request waits on the model.

    A request spends seconds on the upstream and a millisecond on its two writes; holding
    a connection for the whole wait would cap concurrent requests at the pool's size (or,
    with persistent connections, at PostgreSQL's max_connections). Pooled connections are
    cheap to give back and take again; a persistent one would have to reconnect, so it is
    kept.
    """
    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()


class RequestRun:
    """One logged request from routing to its final row: the steps both servers share.

    ``request_process`` drives it in a thread (WSGI), ``request_process_async`` on an
    event loop (ASGI); only the wait for the model differs. Every step that touches the
    database or the shared cache is a plain method, so the async driver can run it in a
    thread. Whatever happens, ``finish``, ``abandon`` or ``crash`` gives the row its
    final status, once.
    """

    def __init__(self, *, request: RequestInput, log: RequestLog) -> None:
        self.request = request
        self.log = log
        self.config = request.config
        self.fields: dict[str, Any] = {}
        self.answer: list[str] = []
        self.alerts: list[Future[bool] | None] = []
        self.call: AssistantCall | None = None
        self.hit: Completion | None = None
        self.completion: Completion | None = None
        self.assistant_started = 0.0
        self.begun: list[PipelineEvent] = []
        self.finished = False

    def logged(self) -> None:
        """The first write, once: the row, status ``received``, committed at once."""
        if self.log._state.adding:
            self.log.save(force_insert=True)

    def before_model_wait(self) -> None:
        """Before any wait on a model (the LLM router's, the assistant's) and only then,
        the row is written and the database connection goes back to the pool; a request
        answered at once (a cache hit, the offline backend) keeps it for its final write."""
        self.logged()
        db_connection_release()

    def begin(
        self, *, start_answer: Callable[[AssistantCall], None] | None = None
    ) -> list[PipelineEvent]:
        """Route, alert on an emergency, look in the response cache: the first events.

        May call the model when the router asks the LLM, so never on an event loop.
        The row is written (``logged``) before any wait on a model and before anything
        is sent. ``start_answer``, given by a driver that can, sends the model's request
        off before that write, so the INSERT overlaps the model's work instead of
        preceding it.
        """
        request = self.request
        decision = route_decide(
            text=request.text,
            requested=request.route,
            catalog=request.catalog,
            config=self.config,
            before_wait=self.before_model_wait,
        )
        events, call = self._routed(decision)
        route = decision.route
        if route.is_emergency:
            self.logged()  # the alert links to the row
            self.alerts.append(self._alert(AlertKind.EMERGENCY))
            if route.safety_preamble:
                events.append(self.delta(route.safety_preamble.strip() + "\n\n", first_text=False))
        self.assistant_started = time.perf_counter()
        self.hit = response_cache_get(call=call)
        if self.hit is None and call.calls_upstream:
            if start_answer is not None:
                start_answer(call)
            self.before_model_wait()
        else:
            self.logged()
        if self.hit is not None:
            events.append(self.from_cache(self.hit))
        self.begun = events
        return events

    def route_on_loop(self) -> list[PipelineEvent] | None:
        """``begin``'s routing on the event loop, for a request that needs no thread.

        None, having written and sent nothing, when the request needs a thread after all:
        the router would wait on the LLM, the route is an emergency (its row and alert come
        first) or the backend answers at once. Otherwise the route's event; the row, the
        response cache and the model's request are ``request_process_on_loop``'s.
        """
        request = self.request
        try:
            decision = route_decide(
                text=request.text,
                requested=request.route,
                catalog=request.catalog,
                config=self.config,
                before_wait=_would_wait,
            )
        except _WouldWait:
            return None
        if decision.route.is_emergency:
            return None
        events, call = self._routed(decision)
        if not call.calls_upstream:
            return None
        self.assistant_started = time.perf_counter()
        self.begun = events
        return events

    def _routed(self, decision: RouteDecision) -> tuple[list[PipelineEvent], AssistantCall]:
        """The decision into the row's fields, its event, and the call to its assistant."""
        request, route = self.request, decision.route
        self.fields.update(
            route_id=route.id,
            routing_source=decision.source,
            confidence=round(decision.confidence, 4),
            routing_ms=round(decision.elapsed_ms, 3),
            upstream_calls=decision.upstream_calls,
        )
        self.call = AssistantCall(
            text=request.text, location=request.location, route=route, config=self.config
        )
        self.fields.update(backend=self.call.backend_name, model=self.call.model)
        return [RouteChosen(log=self.log, decision=decision)], self.call

    def from_cache(self, hit: Completion) -> AnswerDelta:
        """A cached answer stands for the model's: its whole text in one delta."""
        self.fields["cached"] = True
        self.completion = hit
        return self.delta(hit.text)

    def delta(self, text: str, *, first_text: bool = True) -> AnswerDelta:
        if first_text:
            self.fields.setdefault("ttft_ms", _elapsed_ms(self.request.started))
        self.answer.append(text)
        return AnswerDelta(text)

    def take(self, event: StreamEvent) -> AnswerDelta | None:
        """One event of the assistant's stream: text for the person, or its completion."""
        if isinstance(event, TextDelta):
            return self.delta(event.text)
        self.completion = event
        return None

    def answered(self) -> None:
        if self.completion is None:
            raise AssistantError(FailureKind.UPSTREAM, "the assistant ended without an answer")

    def failed(self, exc: AssistantError) -> AnswerDelta:
        """The model could not answer: say so, with the procedure on file, and alert."""
        assert self.call is not None
        message = _failure_message(self.call.route, exc, self.request.text)
        if self.answer and not self.answer[-1].endswith("\n"):
            message = "\n\n" + message
        self.fields.update(
            status=RequestStatus.TIMEOUT
            if exc.kind is FailureKind.TIMEOUT
            else RequestStatus.ERROR,
            error=f"{exc.kind}: {exc}",
        )
        self.alerts.append(self._alert(AlertKind.FAILURE, detail=str(exc)))
        return self.delta(message, first_text=False)

    def finish(self) -> RequestDone:
        """The second write, with everything the request learnt; caches a fresh answer."""
        if self.conclude():
            self.cache_answer()
        _finish(self.log, self.fields, self.request.started)
        self.finished = True
        return self.done()

    async def finish_async(self, pool: AsyncConnectionPool) -> RequestDone:
        """``finish`` from the event loop: the UPDATE goes out on the loop's own connection.

        If that connection fails, the ORM writes the row from a thread, as ``finish`` does.
        Once begun it runs to its end, even if the client goes away meanwhile.
        """
        call = self.call
        assert call is not None

        async def write() -> None:
            if self.conclude() and response_cache_usable(call=call):
                await sync_to_async(self.cache_answer)()
            await _finish_async(pool, self.log, self.fields, self.request.started)
            self.finished = True

        await to_the_end(write())
        return self.done()

    def conclude(self) -> bool:
        """Everything the request learnt, into the row's fields (no I/O); returns whether
        there is a fresh answer to cache."""
        assert self.call is not None
        fields = self.fields
        fresh = False
        if "status" not in fields:
            assert self.completion is not None
            fields.update(
                status=RequestStatus.CACHED if fields.get("cached") else RequestStatus.OK,
                model=self.completion.model,
                tokens_in=self.completion.tokens_in,
                tokens_out=self.completion.tokens_out,
            )
            fresh = self.hit is None
        fields["upstream_calls"] += self.call.upstream_calls
        fields.update(answer="".join(self.answer), assistant_ms=_elapsed_ms(self.assistant_started))
        return fresh

    def cache_answer(self) -> None:
        assert self.call is not None and self.completion is not None
        response_cache_put(call=self.call, completion=self.completion)

    def done(self) -> RequestDone:
        return RequestDone(
            log=self.log,
            failed=self.fields["status"] not in _ANSWERED,
            catalog=self.request.catalog,
        )

    def abandon(self) -> None:
        """The client went away before the end: keep what it was sent."""
        if not self.finished:
            self.finished = True
            self.fields.update(
                status=RequestStatus.ABANDONED,
                answer="".join(self.answer),
                error="the client went away before the answer was complete",
            )
            _finish(self.log, self.fields, self.request.started)

    def crash(self, exc: BaseException) -> None:
        if not self.finished:
            self.finished = True
            logger.error("request %s failed", self.log.pk, exc_info=exc)
            self.fields.update(
                status=RequestStatus.ERROR,
                answer="".join(self.answer),
                error=f"internal error: {type(exc).__name__}: {exc}",
            )
            _finish(self.log, self.fields, self.request.started)

    def wait_alerts(self) -> None:
        slack_alerts_wait(self.alerts, timeout_s=SLACK_WAIT_S)

    def _alert(self, kind: AlertKind, detail: str = "") -> Future[bool] | None:
        # The notifier reads the log's fields in its own thread; give it what we know so far.
        for name, value in self.fields.items():
            setattr(self.log, name, value)
        return slack_alert_submit(kind=kind, log=self.log, config=self.config, detail=detail)


def request_process(*, request: RequestInput, log: RequestLog) -> Generator[PipelineEvent]:
    """Route and answer a logged request, yielding events as they happen.

    The row is finished in every case, including the consumer closing this generator
    early (the client went away): then it is marked ``abandoned`` with what was said.
    """
    run = RequestRun(request=request, log=log)
    try:
        yield from run.begin()
        if run.hit is None:
            assert run.call is not None
            try:
                for event in run.call:
                    if (delta := run.take(event)) is not None:
                        yield delta
                run.answered()
            except AssistantError as exc:
                yield run.failed(exc)
        yield run.finish()
    except GeneratorExit:
        run.abandon()
        raise
    except Exception as exc:
        run.crash(exc)
        raise
    finally:
        run.wait_alerts()


def request_process_async(
    *, request: RequestInput, log: RequestLog, loop: asyncio.AbstractEventLoop | None = None
) -> AsyncGenerator[PipelineEvent]:
    """``request_process`` for an event loop (ASGI); call it in the request's thread.

    Routing (which may ask the LLM) and the response cache run here, in the thread. A
    cached answer is complete already: its row is finished here too and the loop only
    replays the events. Otherwise the wait for the model happens on the loop (the
    backend's ``astream``): a request waiting on its answer holds no thread. Given the
    server's ``loop``, the model's request leaves from that loop as soon as the route is
    known, while this thread writes the row (``log`` may be unsaved: ``request_log_new``).
    """
    run = RequestRun(request=request, log=log)
    started: list[_AnswerStarted] = []

    def start_answer(call: AssistantCall) -> None:
        assert loop is not None
        started.append(_AnswerStarted.from_thread(call, loop))

    try:
        run.begin(start_answer=start_answer if loop is not None else None)
        if run.hit is not None:
            events = [*run.begun, run.finish()]
            run.wait_alerts()
            return _replay(events)
    except Exception as exc:
        for answer in started:
            answer.cancel()
        run.crash(exc)
        raise
    return _answer_on_loop(run, started[0] if started else None)


class _WouldWait(Exception):
    """Routing on the event loop reached a wait on a model: a thread's job."""


def _would_wait() -> None:
    raise _WouldWait


async def request_process_on_loop(
    *, request: RequestInput, pool: AsyncConnectionPool
) -> tuple[RequestLog, AsyncGenerator[PipelineEvent]] | None:
    """``request_process_async`` without the request's thread: routing, the model's request,
    the row's INSERT (on the loop's own connection, while the model's request is on its
    way) and the answer, all on the event loop; a cached answer's row is finished here.

    For a request whose route the classifier or the person settles and whose answer comes
    from the model or the response cache (``RequestRun.route_on_loop``). Otherwise None,
    with nothing written and no model called: serve it from a thread
    (``request_process_async``). The row is committed when this returns, before any event
    is sent, as on that path.
    """
    if not routing_ready(requested=request.route, catalog=request.catalog, config=request.config):
        return None  # the classifier would train first: seconds of the loop
    log = request_log_new(request=request)
    run = RequestRun(request=request, log=log)
    try:
        begun = run.route_on_loop()
    except Exception:
        # Nothing is written or sent yet: the thread's way writes the row and records
        # the failure as it does for any request.
        logger.warning("request %s: routing on the event loop failed", log.pk, exc_info=True)
        return None
    if begun is None:
        return None
    call = run.call
    assert call is not None
    started: _AnswerStarted | None = None
    if not response_cache_usable(call=call):
        # Started eagerly: the model's request is on its way before the INSERT is even
        # built.
        started = _AnswerStarted.on_loop(call)
    try:
        insert = _insert_statement(log)
    except Exception:
        logger.warning("request %s: its INSERT could not be built", log.pk, exc_info=True)
        if started is not None:
            await started.aclose()
        return None
    # Once sent, the INSERT is awaited to its end whatever happens to the request.
    inserting = asyncio.ensure_future(db_async_execute(pool, *insert))
    if started is None:
        # The shared cache's client blocks: it is read from a thread, while the INSERT is
        # under way; a miss sends the model's request as soon as it is known.
        run.hit = await sync_to_async(response_cache_get, thread_sensitive=False)(call=call)
        if run.hit is None:
            started = _AnswerStarted.on_loop(call)
        else:
            begun.append(run.from_cache(run.hit))
    try:
        inserted = await to_the_end(inserting)
    except Exception:
        logger.warning("request %s: the event loop's INSERT failed", log.pk, exc_info=True)
        inserted = 0
    if inserted != 1:
        if started is not None:
            await started.aclose()
        return None
    log._state.adding = False
    log._state.db = DEFAULT_DB_ALIAS
    if run.hit is not None:
        # A cached answer is complete already: the row is finished before any event.
        return log, _replay([*begun, await run.finish_async(pool)])
    assert started is not None
    return log, _answer_on_loop(run, started)


class _AnswerStarted:
    """An answer's stream whose first step (sending the model's request, then waiting for
    the first text) already runs as a task on the loop; the request's generator takes it
    from there on the loop. Started from the request's thread (``from_thread``) or on the
    loop itself (``on_loop``)."""

    # How long the request's thread waits for the loop to take the call up (from_thread).
    HANDOFF_WAIT_S = 0.02

    def __init__(
        self,
        events: AsyncGenerator[StreamEvent],
        first: "Future[StreamEvent | None] | asyncio.Future[StreamEvent | None]",
    ) -> None:
        self.events = events
        self.first = first

    @classmethod
    def from_thread(cls, call: AssistantCall, loop: asyncio.AbstractEventLoop) -> "_AnswerStarted":
        events = call.astream()
        running = threading.Event()
        started = cls(events, asyncio.run_coroutine_threadsafe(_first_event(events, running), loop))
        # The thread's next step (the INSERT) needs the GIL too, and the loop would wait
        # for it until the thread blocks on the database: 0.7 ms measured at 50 clients.
        # Waiting here until the loop runs the task gives the loop the GIL until it has
        # built and sent the model's request; the INSERT, off the critical path, follows.
        running.wait(cls.HANDOFF_WAIT_S)
        return started

    @classmethod
    def on_loop(cls, call: AssistantCall) -> "_AnswerStarted":
        events = call.astream()
        # Started eagerly: the model's request is written to its socket now, before the
        # caller goes on (to the row's INSERT), not after a turn of the loop.
        first = asyncio.Task(
            _first_event(events, None), loop=asyncio.get_running_loop(), eager_start=True
        )
        return cls(events, first)

    def cancel(self) -> None:
        """The row could not be written, so the answer is not wanted."""
        self.first.cancel()

    async def stream(self) -> AsyncGenerator[StreamEvent]:
        first = await asyncio.wrap_future(self.first)
        if first is not None:
            yield first
            async for event in self.events:
                yield event

    async def aclose(self) -> None:
        if not self.first.done():
            self.first.cancel()
        # The stream may be closed only once the task running its first step is over.
        with contextlib.suppress(BaseException):
            await asyncio.wrap_future(self.first)
        await self.events.aclose()


async def _first_event(
    events: AsyncIterator[StreamEvent], running: threading.Event | None
) -> StreamEvent | None:
    if running is not None:
        running.set()
    return await anext(events, None)


async def _replay(events: list[PipelineEvent]) -> AsyncGenerator[PipelineEvent]:
    for event in events:
        yield event


async def _answer_on_loop(
    run: RequestRun, started: _AnswerStarted | None
) -> AsyncGenerator[PipelineEvent]:
    """The rest of a begun run on the event loop. Closing or cancelling this generator
    (the client went away) marks the row ``abandoned``.

    Served by the project's ASGI handler (``started``: the row was written, and committed,
    by the request's thread) the final UPDATE goes out from the loop on its own connection
    (``config.db_async``); otherwise, as in tests that drive this generator inside a test's
    transaction, the ORM writes it from the request's thread (``sync_to_async``).
    """
    assert run.call is not None
    stream = started.stream() if started is not None else run.call.astream()
    try:
        for first in run.begun:
            yield first
        try:
            async for event in stream:
                if (delta := run.take(event)) is not None:
                    yield delta
                elif run.completion is not None:
                    break  # complete: the final write does not wait for the body's end
            run.answered()
        except AssistantError as exc:
            yield run.failed(exc)
        pool = db_async_pool() if started is not None else None
        if pool is not None:
            yield await run.finish_async(pool)
        else:
            yield await sync_to_async(run.finish)()
        # The person has everything: the rest of the model's body is read now, so that its
        # connection goes back to the pool for the next call.
        async for _ in stream:
            pass
    except (GeneratorExit, asyncio.CancelledError):
        if not run.finished:  # closed once the last event is out: nothing to record
            await asyncio.shield(sync_to_async(run.abandon)())
        raise
    except Exception as exc:
        await sync_to_async(run.crash)(exc)
        raise
    finally:
        await stream.aclose()
        if started is not None:
            await started.aclose()
        if run.alerts:
            await sync_to_async(run.wait_alerts)()


_ANSWERED = frozenset({RequestStatus.OK, RequestStatus.CACHED})


def _finish(log: RequestLog, fields: dict[str, Any], started: float) -> None:
    """The second write: one UPDATE with everything the request learnt."""
    _finish_stamp(log, fields, started)
    _finish_write(log, fields)


def _finish_stamp(log: RequestLog, fields: dict[str, Any], started: float) -> None:
    """The request's last fields (its total time, when it finished), onto the row too."""
    fields["total_ms"] = _elapsed_ms(started)
    fields["finished_at"] = timezone.now()
    for name, value in fields.items():
        setattr(log, name, value)


def _finish_write(log: RequestLog, fields: dict[str, Any]) -> None:
    """The ORM's write of a stamped row. A request that failed before its row was written
    (a crash while routing) gets it now, in its final state: one INSERT."""
    if log._state.adding:
        log.save(force_insert=True)
    else:
        RequestLog.objects.filter(pk=log.pk).update(**fields)


def _update_compiled(log: RequestLog, fields: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """``RequestLog.objects.filter(pk=log.pk).update(**fields)``'s SQL and parameters."""
    query = RequestLog.objects.filter(pk=log.pk).query.chain(UpdateQuery)
    assert isinstance(query, UpdateQuery)
    query.add_update_values(fields)
    sql, params = query.get_compiler(DEFAULT_DB_ALIAS).as_sql()
    return sql, tuple(params)


_UPDATE_SQL: dict[tuple[str, ...], str] = {}


def _update_statement(log: RequestLog, fields: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """``_update_compiled``, its SQL compiled by the ORM once per set of columns.

    Compiling took 0.5 ms of the event loop per request at 50 clients; the parameters are
    prepared here as the compiler prepares them (``get_db_prep_save`` for each value, the
    primary key's ``get_db_prep_value``), which a test holds to the compiler's output.
    """
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


async def _finish_async(
    pool: AsyncConnectionPool, log: RequestLog, fields: dict[str, Any], started: float
) -> None:
    """``_finish`` on the event loop's connection: the same single UPDATE, built by the ORM.

    Should that connection fail (or the row not be there for it), the ORM writes the row
    from a thread instead: the final status is never left to the sweep.
    """
    _finish_stamp(log, fields, started)
    if not log._state.adding:
        try:
            if await db_async_execute(pool, *_update_statement(log, fields)) == 1:
                return
            logger.warning("request %s: the event loop's UPDATE found no row", log.pk)
        except Exception:
            logger.warning("request %s: the event loop's UPDATE failed", log.pk, exc_info=True)
    await sync_to_async(_finish_write)(log, fields)


def request_submit(
    *,
    text: Any,
    route: Any = AUTO,
    location: Any = "",
    user: User | AnonymousUser | None,
    channel: str = Channel.API,
) -> RequestLog:
    """Validate, log and answer one request without streaming; returns the final row."""
    request = request_validate(
        text=text, route=route, location=location, user=user, channel=channel
    )
    log = request_log_create(request=request)
    final = log
    for event in request_process(request=request, log=log):
        if isinstance(event, RequestDone):
            final = event.log
    return final


# --- After the answer -----------------------------------------------------------------


@transaction.atomic
def request_feedback_set(
    *, log: RequestLog, helpful: bool, comment: str = "", config: ConfigSnapshot | None = None
) -> RequestLog:
    comment = (comment or "").strip()
    if len(comment) > COMMENT_MAX_CHARS:
        raise ValidationError(
            {"comment": [f"Keep the comment under {COMMENT_MAX_CHARS} characters."]}
        )
    log.feedback_helpful = helpful
    log.feedback_comment = comment
    log.feedback_at = timezone.now()
    log.save(update_fields=["feedback_helpful", "feedback_comment", "feedback_at"])
    if not helpful:
        config = config or system_config_get()
        transaction.on_commit(
            lambda: slack_alerts_wait(
                [
                    slack_alert_submit(
                        kind=AlertKind.NEGATIVE_FEEDBACK, log=log, config=config, detail=comment
                    )
                ],
                timeout_s=SLACK_WAIT_S,
            )
        )
    return log


@transaction.atomic
def request_escalate(*, log: RequestLog, note: str = "") -> RequestLog:
    """Hand a request to a human: status ``escalated`` and a Slack alert, once."""
    if log.escalated:
        return log
    log.escalated = True
    log.escalated_at = timezone.now()
    log.status = RequestStatus.ESCALATED
    log.save(update_fields=["escalated", "escalated_at", "status"])
    config = system_config_get()
    transaction.on_commit(
        lambda: slack_alerts_wait(
            [slack_alert_submit(kind=AlertKind.ESCALATION, log=log, config=config, detail=note)],
            timeout_s=SLACK_WAIT_S,
        )
    )
    return log


@transaction.atomic
def request_log_relabel(*, log: RequestLog, route: Route) -> bool:
    """Record the route a request should have gone to and teach the router with its text.

    Returns whether the text was new to that route's examples. The router retrains on
    the next request of every worker (the route catalog's fingerprint changes).
    """
    log.corrected_route = route
    log.corrected_at = timezone.now()
    log.save(update_fields=["corrected_route", "corrected_at"])
    return route_utterance_add(route=route, text=log.text)


def request_logs_mark_abandoned(*, older_than: timedelta = timedelta(minutes=5)) -> int:
    """Rows still ``received`` long after any deadline belong to a killed process."""
    cutoff = timezone.now() - older_than
    return RequestLog.objects.filter(status=RequestStatus.RECEIVED, created_at__lt=cutoff).update(
        status=RequestStatus.ABANDONED,
        error="the process handling this request stopped before it finished",
        finished_at=timezone.now(),
    )


__all__ = [
    "AnswerDelta",
    "PipelineEvent",
    "RequestDone",
    "RequestInput",
    "RouteChosen",
    "RoutingSource",
    "request_escalate",
    "request_feedback_set",
    "request_log_create",
    "request_log_new",
    "request_log_relabel",
    "request_logs_mark_abandoned",
    "request_process",
    "request_process_async",
    "request_submit",
    "request_validate",
]
