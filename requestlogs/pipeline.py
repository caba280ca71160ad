"""One request end to end: the pipeline every submit runs, on the event loop.

The lifecycle (DESIGN.md): validate (``requestlogs.validation``) -> config and routes from
the cached selectors -> insert the log row, committed (``request_start``) -> route ->
emergency preamble and alert -> response cache -> the assistant, streamed -> the row's one
UPDATE -> ``RequestDone``. The row is committed before any routing or model work starts, so
every model call belongs to a committed row. Whatever happens after the insert (an upstream
failure, the client going away, a bug) ends with the row in a final status.

``RequestRun.events`` yields the request's events as they happen: the event stream renders
each one as it comes (``requestlogs.sse``), the JSON answer waits for the last
(``request_answer``). Steps that block (the LLM router, a shared-cache read, the Slack
alert's hand-off) are awaited in a thread; everything else runs on the loop.
"""

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import IntegrityError
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed

from assistants.backends import AssistantError, Completion, FailureKind, StreamEvent, TextDelta
from assistants.backends.offline import knowledge_best
from assistants.services import AssistantCall, response_cache_get, response_cache_put
from config.threads import in_thread, to_the_end
from requestlogs.metrics import request_observe
from requestlogs.models import Alert, AlertKind, AlertState, RequestLog, RequestStatus
from requestlogs.rows import request_log_finish, request_log_insert
from requestlogs.services import alert_queue
from requestlogs.validation import RequestInput
from routing.router import route_decide
from routing.selectors import RouteCatalog, RouteSnapshot
from routing.strategies import RouteDecision
from routing.suggestion import route_suggestion

logger = logging.getLogger(__name__)

# What an alert writes to the row before it is queued: the worker reads the message from it.
ALERT_ROW_FIELDS = ("route", "routing_source", "confidence", "status", "error")


# --- Events a request produces while it runs -------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteChosen:
    log: RequestLog
    decision: RouteDecision
    suggested: RouteSnapshot | None = None
    """A hand-chosen route only: the route the classifier strongly prefers (a hint)."""


@dataclass(frozen=True, slots=True)
class AnswerDelta:
    text: str


@dataclass(frozen=True, slots=True)
class RequestDone:
    """The request is over and its row final; ``failed`` when the assistant could not
    answer (status timeout or error)."""

    log: RequestLog
    catalog: RouteCatalog
    """The routes the request was served with: they name its route without a cache read."""
    alerts: tuple[Alert, ...] = ()
    """The request's Slack alerts as it queued them: its answer shows them without a query."""
    suggested: RouteSnapshot | None = None
    """As ``RouteChosen.suggested``."""

    @property
    def failed(self) -> bool:
        return self.log.status not in {RequestStatus.OK, RequestStatus.CACHED}


PipelineEvent = RouteChosen | AnswerDelta | RequestDone

# --- The pipeline ---------------------------------------------------------------------


async def request_start(*, request: RequestInput) -> "RequestRun":
    """Accept a validated request: its row, status ``received``, committed (the first of
    the request's two writes). Raises, having called nothing, if the row cannot be written."""
    log = RequestLog(
        # The request's id (X-Request-ID, its log line) is its row's key.
        id=request.context.id,
        created_at=timezone.now(),
        user=request.user,
        channel=request.channel,
        location=request.location,
        text=request.text,
        requested_route=request.route,
    )
    run = RequestRun(request=request, log=log)
    try:
        await to_the_end(request_log_insert(log))
    except asyncio.CancelledError:
        # The client left while the row was written: it is written, so it is finished too.
        await to_the_end(run.close())
        raise
    except (IntegrityError, psycopg.IntegrityError) as exc:
        # The row's only key to another table at this point is its user: deleted (by another
        # worker) after this request was authenticated. No row, so no model call.
        raise RequestUserGone from exc
    return run


class RequestUserGone(AuthenticationFailed):
    """The user who sent the request no longer exists: nothing was written or called (a 401,
    as their token now gets)."""

    default_detail = "This account no longer exists."
    default_code = "user_deleted"


async def request_answer(*, request: RequestInput) -> RequestDone:
    """Accept a request and run it to its end: the final row (the JSON answer)."""
    run = await request_start(request=request)
    *_, done = [event async for event in run.events()]
    assert isinstance(done, RequestDone)
    return done


class RequestRun:
    """One accepted request, from its committed row to its final one."""

    def __init__(self, *, request: RequestInput, log: RequestLog) -> None:
        self.request = request
        self.log = log
        self.fields: dict[str, Any] = {"upstream_calls": 0}
        self.answer: list[str] = []
        self.call: AssistantCall | None = None
        self.completion: Completion | None = None
        self.fresh = False
        self.assistant_started = 0.0
        self.finished = False
        self.alerts: list[Alert] = []
        self.route_slug = ""
        self.suggested: RouteSnapshot | None = None

    async def events(self) -> AsyncGenerator[PipelineEvent]:
        """Route and answer the request, yielding events as they happen.

        Closed or cancelled before its end (the client went away) the request is recorded
        as ``abandoned``, with what it was sent; a failure of ClubOS itself as ``error``.
        """
        stream: AsyncGenerator[StreamEvent] | None = None
        try:
            request = self.request
            decision = await route_decide(
                text=request.text,
                requested=request.route,
                catalog=request.catalog,
                config=request.config,
            )
            call = self._routed(decision)
            self.suggested = _suggestion(request, decision)
            yield RouteChosen(log=self.log, decision=decision, suggested=self.suggested)
            if decision.route.is_emergency:
                await self._alert(AlertKind.EMERGENCY)
                if decision.route.safety_preamble:
                    yield self._said(
                        decision.route.safety_preamble.strip() + "\n\n", first_text=False
                    )
            self.assistant_started = time.perf_counter()
            self.completion = await response_cache_get(call=call)
            if self.completion is not None:
                self.fields["cached"] = True
                yield self._said(self.completion.text)
            else:
                stream = call.astream()
                try:
                    async for event in stream:
                        if isinstance(event, TextDelta):
                            yield self._said(event.text)
                        else:
                            self.completion, self.fresh = event, True
                            break  # complete: the final write does not wait for the body's end
                    if self.completion is None:
                        raise AssistantError(
                            FailureKind.UPSTREAM, "the assistant ended without an answer"
                        )
                except AssistantError as exc:
                    yield await self._failed(exc)
            yield await to_the_end(self._finish())
            if stream is not None:
                # The person has everything: the rest of the model's body is read now, so
                # that its connection serves the next call.
                async for _ in stream:
                    pass
        except (GeneratorExit, asyncio.CancelledError):
            await to_the_end(self.close())
            raise
        except Exception as exc:
            if self.finished:
                # The person has the whole answer and the row its final write: a failure
                # after that (reading the rest of the model's body) is not theirs to see.
                logger.warning("request %s: failed after its answer", self.log.pk, exc_info=exc)
                return
            await to_the_end(self._crash(exc))
            raise
        finally:
            if stream is not None:
                await stream.aclose()

    async def close(self) -> None:
        """The client went away before the end: the row keeps what it was sent. Nothing
        for a request already over."""
        await self._end(
            RequestStatus.ABANDONED, "the client went away before the answer was complete"
        )

    async def _end(self, status: RequestStatus, error: str) -> None:
        if not self.finished:
            self.fields.update(status=status, answer="".join(self.answer), error=error)
            await self._write()

    def _routed(self, decision: RouteDecision) -> AssistantCall:
        """The decision into the row's fields, and the call to its assistant."""
        request, route = self.request, decision.route
        self.route_slug = route.slug
        self.fields.update(
            route_id=route.id,
            routing_source=decision.source,
            confidence=round(decision.confidence, 4),
            possible_emergency=decision.possible_emergency,
            routing_ms=round(decision.elapsed_ms, 3),
            upstream_calls=decision.upstream_calls,
        )
        self.call = AssistantCall(
            text=request.text, location=request.location, route=route, config=request.config
        )
        self.fields.update(backend=self.call.backend_name, model=self.call.model)
        return self.call

    def _said(self, text: str, *, first_text: bool = True) -> AnswerDelta:
        if first_text:
            self.fields.setdefault("ttft_ms", _elapsed_ms(self.request.started))
        self.answer.append(text)
        return AnswerDelta(text)

    async def _failed(self, exc: AssistantError) -> AnswerDelta:
        """The model could not answer: say so, with the procedure on file, and alert."""
        assert self.call is not None
        self.fields.update(
            status=RequestStatus.TIMEOUT
            if exc.kind is FailureKind.TIMEOUT
            else RequestStatus.ERROR,
            error=f"{exc.kind}: {exc}",
        )
        alert = await self._alert(AlertKind.FAILURE, detail=str(exc))
        message = _failure_message(self.call.route, exc, self.request.text, alert=alert)
        if self.answer and not self.answer[-1].endswith("\n"):
            message = "\n\n" + message
        return self._said(message, first_text=False)

    async def _finish(self) -> RequestDone:
        """The second write, with everything the request learnt; caches a fresh answer."""
        assert self.call is not None
        fields = self.fields
        if "status" not in fields:
            assert self.completion is not None
            fields.update(
                status=RequestStatus.CACHED if fields.get("cached") else RequestStatus.OK,
                model=self.completion.model,
                tokens_in=self.completion.tokens_in,
                tokens_out=self.completion.tokens_out,
            )
            if self.fresh:
                await response_cache_put(call=self.call, completion=self.completion)
        fields["answer"] = "".join(self.answer)
        await self._write()
        return RequestDone(
            log=self.log,
            catalog=self.request.catalog,
            alerts=tuple(self.alerts),
            suggested=self.suggested,
        )

    async def _crash(self, exc: BaseException) -> None:
        logger.error("request %s failed", self.log.pk, exc_info=exc)
        await self._end(RequestStatus.ERROR, f"internal error: {type(exc).__name__}: {exc}")

    async def _write(self) -> None:
        """The row's final write, once. Should the database not take it now (gone
        mid-request), the person still gets what they were answered at once, and the write
        is retried in the background (``request_log_finish``); a row no retry finished stays
        ``received`` until the abandoned-request sweep marks it."""
        if self.call is not None:  # the model's calls, however the request ended
            self.fields["upstream_calls"] += self.call.upstream_calls
        if self.assistant_started:
            self.fields["assistant_ms"] = _elapsed_ms(self.assistant_started)
        self.fields.update(total_ms=_elapsed_ms(self.request.started), finished_at=timezone.now())
        self._onto_log()
        self.finished = True
        try:
            await request_log_finish(self.log)
        except Exception:
            logger.exception("request %s: its final write failed", self.log.pk)
        try:
            request_observe(log=self.log, route=self.route_slug, context=self.request.context)
        except Exception:
            # Monitoring never costs a person their answer.
            logger.exception("request %s: its metrics were not recorded", self.log.pk)

    async def _alert(self, kind: AlertKind, detail: str = "") -> Alert:
        """Record the alert and queue its task (one trip to a thread, a few ms): the worker
        builds the message from the row, so the row first gets what the request knows."""
        self._onto_log()
        alert = await in_thread(
            alert_queue,
            log=self.log,
            kind=kind,
            config=self.request.config,
            detail=detail,
            row_fields=ALERT_ROW_FIELDS,
        )
        self.alerts.append(alert)
        return alert

    def _onto_log(self) -> None:
        for name, value in self.fields.items():
            setattr(self.log, name, value)


def _suggestion(request: RequestInput, decision: RouteDecision) -> RouteSnapshot | None:
    """For a route chosen by hand, the classifier's strong second opinion (on the loop:
    ~0.1 ms, no network); the chosen route stays the request's route."""
    if decision.source != "manual":
        return None
    return route_suggestion(text=request.text, chosen=decision.route, catalog=request.catalog)


def _elapsed_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def alert_wording(alert: Alert) -> str:
    """What the person is told about an alert, from its recorded state."""
    if alert.state == AlertState.SENT:
        return "Manager alerted on Slack."
    if alert.state == AlertState.QUEUED:
        return "A manager alert is queued for Slack."
    if alert.state == AlertState.NO_CHANNEL:
        return "No alert channel is configured: call the manager now."
    return "The Slack alert failed: call the manager now."


def _failure_message(route: RouteSnapshot, exc: AssistantError, text: str, *, alert: Alert) -> str:
    """What the person sees when the model fails: what happened, and what to do now."""
    if exc.kind is FailureKind.TIMEOUT:
        head = "The assistant did not answer in time."
    elif exc.kind is FailureKind.UNAVAILABLE:
        head = "The assistant is unavailable right now."
    else:
        head = "The assistant could not answer just now."
    lines = [f"{head} {alert_wording(alert)} You can also press Escalate."]
    procedures = knowledge_best(route.knowledge, text)
    if procedures:
        lines.append("Meanwhile, the standard procedure on file:")
        lines += [f"**{p.title}**\n{p.body.strip()}" for p in procedures]
    return "\n\n".join(lines)
