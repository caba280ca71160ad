"""The request API: submit (JSON or server-sent events), list, read, feedback, escalate; stats.

Views are thin: serializers check the shape of the input, ``requestlogs.services`` does
every write and ``request_log_payload`` is the one definition of the public request object.
"""

import functools
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from datetime import date, datetime, time, timedelta
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.exception import response_for_exception
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.module_loading import import_string
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clubos.auth import CachedTokenAuthentication, api_token_user_known
from clubos.serving import EventStreamResponse, LastPart, request_event_loop
from config.db_async import db_async_pool
from config.selectors import system_config_peek
from requestlogs.models import Channel, RequestLog, RequestStatus, RoutingSource
from requestlogs.selectors import request_log_payload, request_logs_visible_to
from requestlogs.services import (
    AnswerDelta,
    PipelineEvent,
    RequestDone,
    RequestInput,
    RouteChosen,
    request_escalate,
    request_feedback_set,
    request_log_create,
    request_log_new,
    request_process,
    request_process_async,
    request_process_on_loop,
    request_validate,
)
from requestlogs.stats import timing_stats
from routing.selectors import route_catalog_get, route_catalog_peek

logger = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
CHANNEL_HEADER = "HTTP_X_CLUBOS_CHANNEL"
STATS_DEFAULT_DAYS = 7
STATS_MAX_DAYS = 366

# What an `error` event says; the row's own `error` column is for staff and may carry
# upstream details, so it is not sent to clients.
FAILURE_MESSAGES: dict[str, str] = {
    RequestStatus.TIMEOUT: "The assistant did not answer in time.",
    RequestStatus.ERROR: "The assistant could not answer.",
}
INTERNAL_ERROR_MESSAGE = "ClubOS failed while answering this request."


# --- Server-sent events ---------------------------------------------------------------


def sse_frame(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event: a name and one line of compact JSON."""
    payload = json.dumps(data, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


def _route_event_data(event: RouteChosen) -> dict[str, Any]:
    decision = event.decision
    return {
        "id": str(event.log.pk),
        "route": {"slug": decision.route.slug, "name": decision.route.name},
        "routing": {"source": decision.source, "confidence": round(decision.confidence, 3)},
        "timings_ms": {"routing": round(decision.elapsed_ms, 1)},
    }


def _done_frame(event: RequestDone) -> bytes:
    # The request's own catalog: on the event loop, no cache read that could wait.
    payload = request_log_payload(event.log, catalog=event.catalog)
    if not event.failed:
        return sse_frame("done", payload)
    message = FAILURE_MESSAGES.get(event.log.status, FAILURE_MESSAGES[RequestStatus.ERROR])
    return sse_frame("error", {**payload, "error": message})


def _frame(event: PipelineEvent) -> bytes:
    if isinstance(event, AnswerDelta):
        return sse_frame("delta", {"text": event.text})
    if isinstance(event, RouteChosen):
        return sse_frame("route", _route_event_data(event))
    return _done_frame(event)


def _internal_error_frame(log: RequestLog) -> bytes:
    return sse_frame("error", {**request_log_payload(log), "error": INTERNAL_ERROR_MESSAGE})


def request_event_stream(events: Iterator[PipelineEvent], log: RequestLog) -> Iterator[bytes]:
    """The pipeline's events as SSE frames.

    Closing this generator (Django closes the response when the client goes away) closes
    the pipeline's, whose GeneratorExit handling writes the row's final status.
    """
    try:
        for event in events:
            yield _frame(event)
    except Exception:
        # The pipeline has already marked the row `error`; the client gets a final
        # event instead of a stream that just stops.
        logger.exception("request %s failed while streaming", log.pk)
        log.refresh_from_db()
        yield _internal_error_frame(log)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


async def request_event_stream_async(
    events: AsyncGenerator[PipelineEvent], log: RequestLog
) -> AsyncIterator[bytes]:
    """``request_event_stream`` for the ASGI server (Django iterates it on the event loop)."""
    try:
        async for event in events:
            # The final frame goes out with the end of the body (clubos.asgi).
            yield LastPart(_frame(event)) if isinstance(event, RequestDone) else _frame(event)
    except Exception:
        logger.exception("request %s failed while streaming", log.pk)
        await sync_to_async(log.refresh_from_db)()
        yield LastPart(_internal_error_frame(log))
    finally:
        await events.aclose()


def event_stream_response(content: Iterator[bytes] | AsyncIterator[bytes]) -> EventStreamResponse:
    response = EventStreamResponse(
        content, status=status.HTTP_201_CREATED, content_type=EVENT_STREAM
    )
    response["Cache-Control"] = "no-cache"
    # Tell nginx-style proxies to pass every frame on at once.
    response["X-Accel-Buffering"] = "no"
    return response


def _wants_event_stream(request: Request) -> bool:
    return EVENT_STREAM in request.META.get("HTTP_ACCEPT", "")


class _EventStreamNegotiation(DefaultContentNegotiation):
    """Errors before the stream starts (400, 401) are JSON even when the client asked for SSE.

    The stream itself is a plain Django response the view returns; DRF renders only the
    JSON answers, so it must not refuse ``Accept: text/event-stream`` with a 406.
    """

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        if _wants_event_stream(request):
            return JSONRenderer(), JSONRenderer.media_type
        return super().select_renderer(request, renderers, format_suffix)


# --- Schema-only descriptions of the request object ------------------------------------
# The payload itself comes from request_log_payload(); these describe it for OpenAPI.


class RouteRefSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()


# Inline: a serializer class cannot declare a field named `source` (Field.source).
ROUTING_INFO = inline_serializer(
    name="RoutingInfo",
    fields={
        "source": serializers.ChoiceField(choices=RoutingSource.choices, allow_null=True),
        "confidence": serializers.FloatField(allow_null=True),
    },
)


class RequestTimingsSerializer(serializers.Serializer):
    routing = serializers.FloatField(allow_null=True)
    ttft = serializers.FloatField(allow_null=True, help_text="Time to the answer's first text.")
    assistant = serializers.FloatField(allow_null=True)
    total = serializers.FloatField(allow_null=True)


class RequestObjectSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=RequestStatus.choices)
    route = RouteRefSerializer(allow_null=True)
    routing = ROUTING_INFO
    answer = serializers.CharField()
    cached = serializers.BooleanField()
    escalated = serializers.BooleanField()
    timings_ms = RequestTimingsSerializer()
    created_at = serializers.DateTimeField()


class FeedbackOutSerializer(serializers.Serializer):
    helpful = serializers.BooleanField(allow_null=True)
    comment = serializers.CharField()


class RequestWithFeedbackSerializer(RequestObjectSerializer):
    feedback = FeedbackOutSerializer()


PaginatedRequestObjectSerializer = inline_serializer(
    name="PaginatedRequestObjectList",
    fields={
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": RequestObjectSerializer(many=True),
    },
)

SSE_DESCRIPTION = """\
With `Accept: text/event-stream` the answer streams as server-sent events, each
`event: <name>` plus one line `data: <json>`:

* `route` — `{"id", "route": {"slug","name"}, "routing": {"source","confidence"},
  "timings_ms": {"routing"}}` as soon as the route is chosen;
* `delta` — `{"text"}` for each piece of the answer as it arrives;
* `done` — the full request object (as in the JSON response), or
* `error` — the full request object plus `"error": "<message>"` when the assistant
  could not answer (status `timeout` or `error`; the answer says what to do).

Invalid input is still a 400 JSON response, before any event is sent.
"""

REQUEST_ID_PARAMETER = OpenApiParameter(
    "request_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The request's id."
)
VALIDATION_ERROR = OpenApiResponse(description="Invalid input: a message per field.")
NOT_FOUND = OpenApiResponse(description="No such request, or not yours.")


# --- Input -----------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """Text only: DRF's CharField would turn 42 or true into a string."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return data


class RequestCreateInputSerializer(serializers.Serializer):
    # Shape only (types). Whether the text, route and location are acceptable is
    # request_validate()'s decision, so the API and the console give the same messages.
    text = StrictCharField(
        required=True,
        allow_null=False,
        help_text="What is going on, 1-4000 characters.",
        error_messages={
            "required": "Describe what is going on (text is required).",
            "null": "Describe what is going on (text is required).",
            "invalid": "Describe what is going on as text.",
        },
    )
    route = StrictCharField(
        default="auto",
        help_text="`auto` (default) or an enabled route's slug.",
        error_messages={"invalid": "Route must be 'auto' or a route's slug."},
    )
    location = StrictCharField(
        help_text="Where: a venue or bay, up to 100 characters.",
        error_messages={"invalid": "Location must be text."},
    )


class RequestListFilterSerializer(serializers.Serializer):
    route = serializers.SlugField(required=False, help_text="A route's slug.")
    status = serializers.ChoiceField(choices=RequestStatus.choices, required=False)
    since = serializers.CharField(
        required=False, help_text="ISO 8601 date or datetime; requests at or after it."
    )
    until = serializers.CharField(
        required=False,
        help_text="ISO 8601 date (that whole day included) or datetime (exclusive).",
    )

    def validate_since(self, value: str) -> datetime:
        return parse_moment(value, end_of_day=False)

    def validate_until(self, value: str) -> datetime:
        return parse_moment(value, end_of_day=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since >= until:
            raise serializers.ValidationError({"until": ["Must be after since."]})
        return attrs


def parse_moment(value: str, *, end_of_day: bool) -> datetime:
    """An ISO 8601 datetime or date as an aware datetime.

    A date means its whole day in the current time zone: its midnight for a lower bound,
    the next midnight for an (exclusive) upper bound. A datetime without an offset is in
    the current time zone.
    """
    value = value.strip()
    try:
        # Date first: parse_datetime would also read a bare date, as midnight.
        day = parse_date(value)
        moment = None if day is not None else parse_datetime(value)
    except ValueError:
        moment = day = None
    if moment is None and day is None:
        raise serializers.ValidationError(
            "Use an ISO 8601 date or datetime, e.g. 2026-01-31 or 2026-01-31T18:00:00Z."
        )
    if moment is None:
        assert isinstance(day, date)
        moment = datetime.combine(day + timedelta(days=1) if end_of_day else day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _filtered(qs: QuerySet[RequestLog], filters: dict[str, Any]) -> QuerySet[RequestLog]:
    if "route" in filters:
        qs = qs.filter(route__slug=filters["route"])
    if "status" in filters:
        qs = qs.filter(status=filters["status"])
    if "since" in filters:
        qs = qs.filter(created_at__gte=filters["since"])
    if "until" in filters:
        qs = qs.filter(created_at__lt=filters["until"])
    return qs.order_by("-created_at", "-pk")


def _visible_log(request: Request, request_id: str) -> RequestLog:
    """The request if this user may see it; a malformed or foreign id is the same 404."""
    try:
        pk = uuid.UUID(request_id)
    except ValueError:
        raise NotFound("No such request.") from None
    log = request_logs_visible_to(request.user).filter(pk=pk).first()
    if log is None:
        raise NotFound("No such request.")
    return log


# --- Views -----------------------------------------------------------------------------


class RequestListCreateApi(APIView):
    content_negotiation_class = _EventStreamNegotiation

    @extend_schema(
        operation_id="requests_create",
        summary="Submit a request and get the answer",
        description="Routes the request (or uses the chosen route), asks that route's "
        "assistant and returns the logged request. A model failure is not an HTTP error: "
        "the request is created with status `timeout` or `error` and an answer that says "
        "what to do.\n\n" + SSE_DESCRIPTION,
        request=RequestCreateInputSerializer,
        parameters=[
            OpenApiParameter(
                "X-ClubOS-Channel",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                enum=["web"],
                description="`web` marks a session-authenticated call from the console.",
            )
        ],
        responses={
            (201, "application/json"): OpenApiResponse(
                RequestObjectSerializer,
                description="The request, answered and logged; with `Accept: text/event-stream` "
                "the same answer as server-sent events.",
            ),
            (201, EVENT_STREAM): OpenApiResponse(
                OpenApiTypes.STR, description="Server-sent events: route, delta..., done or error."
            ),
            400: VALIDATION_ERROR,
        },
    )
    def post(self, request: Request) -> Response | StreamingHttpResponse:
        serializer = RequestCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        request_input = request_validate(
            text=data.get("text"),
            route=data.get("route"),
            location=data.get("location"),
            user=request.user,
            channel=self._channel(request),
        )
        if _wants_event_stream(request):
            return self._stream(request, request_input)
        log = request_log_create(request=request_input)

        final = log
        for event in request_process(request=request_input, log=log):
            if isinstance(event, RequestDone):
                final = event.log
        return Response(request_log_payload(final), status=status.HTTP_201_CREATED)

    @staticmethod
    def _channel(request: Request) -> str:
        # Only the console (a browser session) is the web channel; a token client is the API.
        from_console = request.META.get(CHANNEL_HEADER, "").strip().lower() == Channel.WEB
        by_session = isinstance(request.successful_authenticator, SessionAuthentication)
        return Channel.WEB if from_console and by_session else Channel.API

    @staticmethod
    def _stream(request: Request, request_input: RequestInput) -> StreamingHttpResponse:
        content: Iterator[bytes] | AsyncIterator[bytes]
        if isinstance(request._request, ASGIRequest):
            # Under ASGI this view runs in a thread; routing (which may ask the LLM) runs
            # here too, then the wait for the answer moves to the event loop and the
            # thread is free: a waiting request costs a coroutine, not a thread. The
            # row is written here, while the model's request is already on its way.
            log = request_log_new(request=request_input)
            events = request_process_async(
                request=request_input, log=log, loop=request_event_loop(request._request)
            )
            content = request_event_stream_async(events, log)
        else:
            log = request_log_create(request=request_input)
            content = request_event_stream(request_process(request=request_input, log=log), log)
        return event_stream_response(content)

    @extend_schema(
        operation_id="requests_list",
        summary="List requests, newest first",
        description="Staff see every request; everyone else their own.",
        parameters=[RequestListFilterSerializer],
        responses={200: PaginatedRequestObjectSerializer, 400: VALIDATION_ERROR},
    )
    def get(self, request: Request) -> Response:
        filters = RequestListFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = _filtered(request_logs_visible_to(request.user), filters.validated_data)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        catalog = route_catalog_get()
        results = [request_log_payload(log, catalog=catalog) for log in page or []]
        return paginator.get_paginated_response(results)


class RequestDetailApi(APIView):
    @extend_schema(
        operation_id="requests_retrieve",
        summary="One request",
        parameters=[REQUEST_ID_PARAMETER],
        responses={200: RequestObjectSerializer, 404: NOT_FOUND},
    )
    def get(self, request: Request, request_id: str) -> Response:
        return Response(request_log_payload(_visible_log(request, request_id)))


class RequestFeedbackApi(APIView):
    class InputSerializer(serializers.Serializer):
        helpful = serializers.BooleanField(help_text="Did the answer help?")
        comment = serializers.CharField(
            required=False, allow_blank=True, default="", help_text="Up to 2000 characters."
        )

        class Meta:
            ref_name = "FeedbackInput"

    @extend_schema(
        operation_id="requests_feedback",
        summary="Say whether the answer helped",
        parameters=[REQUEST_ID_PARAMETER],
        request=InputSerializer,
        responses={200: RequestWithFeedbackSerializer, 400: VALIDATION_ERROR, 404: NOT_FOUND},
    )
    def post(self, request: Request, request_id: str) -> Response:
        log = _visible_log(request, request_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        log = request_feedback_set(log=log, **serializer.validated_data)
        body = request_log_payload(log)
        body["feedback"] = {"helpful": log.feedback_helpful, "comment": log.feedback_comment}
        return Response(body)


class RequestEscalateApi(APIView):
    class InputSerializer(serializers.Serializer):
        note = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            max_length=2000,
            help_text="What the manager should know.",
        )

        class Meta:
            ref_name = "EscalateInput"

    @extend_schema(
        operation_id="requests_escalate",
        summary="Hand the request to a human",
        description="Sets status `escalated` and alerts the managers, once: calling it again "
        "changes nothing.",
        parameters=[REQUEST_ID_PARAMETER],
        request=InputSerializer,
        responses={200: RequestObjectSerializer, 400: VALIDATION_ERROR, 404: NOT_FOUND},
    )
    def post(self, request: Request, request_id: str) -> Response:
        log = _visible_log(request, request_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        log = request_escalate(log=log, note=serializer.validated_data["note"])
        return Response(request_log_payload(log))


# --- Statistics ------------------------------------------------------------------------


class PercentilesSerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class TimingStatsRowSerializer(serializers.Serializer):
    slug = serializers.SlugField(allow_null=True, help_text="Null on the overall row.")
    name = serializers.CharField()
    count = serializers.IntegerField()
    routing_ms = PercentilesSerializer()
    ttft_ms = PercentilesSerializer()
    assistant_ms = PercentilesSerializer()
    total_ms = PercentilesSerializer()
    error_rate = serializers.FloatField(allow_null=True, help_text="(timeout + error) / count.")
    cache_hit_rate = serializers.FloatField(allow_null=True)


class TimingStatsApi(APIView):
    permission_classes = [IsAdminUser]

    class FilterSerializer(serializers.Serializer):
        since = serializers.CharField(required=False, help_text="ISO 8601 date or datetime.")
        until = serializers.CharField(
            required=False, help_text="ISO 8601 date (included) or datetime; default now."
        )
        days = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=STATS_MAX_DAYS,
            help_text=f"The window's length before `until` (default {STATS_DEFAULT_DAYS}).",
        )

        class Meta:
            ref_name = "TimingStatsFilter"

        def validate_since(self, value: str) -> datetime:
            return parse_moment(value, end_of_day=False)

        def validate_until(self, value: str) -> datetime:
            return parse_moment(value, end_of_day=True)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if "since" in attrs and "days" in attrs:
                raise serializers.ValidationError({"days": ["Give since or days, not both."]})
            until = attrs.get("until") or timezone.now()
            since = attrs.get("since") or until - timedelta(
                days=attrs.get("days", STATS_DEFAULT_DAYS)
            )
            if since >= until:
                raise serializers.ValidationError({"until": ["Must be after since."]})
            return {"since": since, "until": until}

    @extend_schema(
        operation_id="stats_timings",
        summary="Timing statistics per route (staff only)",
        description="Per route with requests in the window, then an overall row (slug null): "
        "count, p50/p95 of each timing in milliseconds (as PostgreSQL's percentile_cont), "
        "error rate and cache-hit rate. The window is `[since, until)`, by default the "
        f"last {STATS_DEFAULT_DAYS} days.",
        parameters=[FilterSerializer],
        responses={
            200: inline_serializer(
                name="TimingStats",
                fields={
                    "since": serializers.DateTimeField(),
                    "until": serializers.DateTimeField(),
                    "routes": TimingStatsRowSerializer(many=True),
                    "overall": TimingStatsRowSerializer(),
                },
            ),
            400: VALIDATION_ERROR,
            403: OpenApiResponse(description="Staff only."),
        },
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        since, until = filters.validated_data["since"], filters.validated_data["until"]
        *routes, overall = timing_stats(since=since, until=until)
        return Response(
            {
                "since": since.isoformat(),
                "until": until.isoformat(),
                "routes": routes,
                "overall": overall,
            }
        )


# --- The submit on the event loop ------------------------------------------------------

# The configured middleware that leave a token-authenticated submit's response as it is
# (static files, sessions and messages unused, CSRF exempt, lazy user), and those that
# only add headers to it, applied here. With any other middleware configured, every
# request goes the middleware's way.
_LOOP_INERT_MIDDLEWARE = frozenset(
    {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    }
)
_LOOP_HEADER_MIDDLEWARE = frozenset(
    {
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",  # a JSON answer's Content-Length
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    }
)
_loop_lanes: dict[tuple[str, ...], "list[Any] | None"] = {}
# What an Accept header may list for DRF to answer in JSON: its first renderer is JSON's
# (``_loop_policies_match``) and a media type's parameters (``indent=4``) change the body.
_JSON_ACCEPTED = frozenset({b"", b"application/json", b"*/*"})


def _loop_header_middleware() -> list[Any] | None:
    """The header-adding middleware, in the order their ``process_response`` runs; None
    when the lane is off (the setting, or middleware it does not know)."""
    if not settings.API_SUBMIT_ON_LOOP:
        return None
    names = tuple(settings.MIDDLEWARE)
    if names not in _loop_lanes:
        known = _LOOP_INERT_MIDDLEWARE | _LOOP_HEADER_MIDDLEWARE
        _loop_lanes[names] = (
            None
            if any(name not in known for name in names) or not _loop_policies_match()
            else [
                import_string(name)(_never_called)
                for name in reversed(names)
                if name in _LOOP_HEADER_MIDDLEWARE
            ]
        )
    return _loop_lanes[names]


def _loop_policies_match() -> bool:
    """Whether the view's DRF policies (fixed when its class is made) are the ones the lane
    applies: a token (a session it leaves to the view), authenticated users, no throttling,
    JSON in (the lane's parser is DRF's JSON one) and JSON out first."""
    view = RequestListCreateApi()
    return (
        any(isinstance(a, CachedTokenAuthentication) for a in view.get_authenticators())
        and list(view.permission_classes) == [IsAuthenticated]
        and not view.get_throttles()
        and JSONParser in view.parser_classes
        and view.renderer_classes[0] is JSONRenderer
    )


def _never_called(request: HttpRequest) -> HttpResponseBase:
    raise AssertionError("the loop lane only runs the middleware's process_response")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # as DRF's strict JSON parser


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _answer_format(accept: bytes, query_string: bytes) -> str | None:
    """``sse`` or ``json``, as the view would answer; None when only DRF's negotiation
    can tell (another media type, parameters, a ``?format=``)."""
    if EVENT_STREAM.encode() in accept:
        return "sse"
    if query_string:
        return None
    wanted = {media.strip() for media in accept.split(b",")}
    return "json" if wanted <= _JSON_ACCEPTED else None


async def request_submit_on_loop(
    scope: dict[str, Any], body_file: IO[bytes]
) -> HttpResponseBase | None:
    """``RequestListCreateApi.post`` on the event loop: no thread, no middleware chain, no
    DRF dispatch, the row's INSERT on the loop's own database connection.

    The common request only: a JSON submit whose token this worker already trusts
    (``api_token_user_known``), with valid input, asking for events or for JSON, served by
    ``request_process_on_loop``. Anything else, including every 400 and 401, returns None
    before anything is written or sent, and the request takes the middleware and the view
    in a thread, which answer it as always. The response is the view's: the same events
    or body, status and headers (DRF's, the middleware's).
    """
    middleware = _loop_header_middleware()
    if middleware is None or scope.get("method") != "POST":
        return None
    pool = db_async_pool()
    if pool is None:
        return None
    # From the scope itself: Django's request object is made once the model's request is
    # on its way, for the middleware's headers.
    headers: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        headers[name] = headers[name] + b"," + value if name in headers else value
    answer_format = _answer_format(headers.get(b"accept", b""), scope.get("query_string", b""))
    if answer_format is None:
        return None
    media_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    if media_type != b"application/json":
        return None
    path, script = scope.get("path", ""), scope.get("root_path", "")
    if (path.removeprefix(script) if script else path) != _requests_path_info():
        return None
    user = api_token_user_known(headers.get(b"authorization", b""))
    if user is None:
        return None
    # This process's copies only (``peek``): reading them afresh may wait on the cache or
    # the database, which a thread does.
    config, catalog = system_config_peek(), route_catalog_peek()
    if config is None or catalog is None:
        return None
    # Not request.body: that closes the file, which the thread's way may still need.
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = body_file.read(-1 if limit is None else limit + 1)
    body_file.seek(0)
    if limit is not None and len(body) > limit:
        return None
    data = _json_object(body)
    if data is None:
        return None
    try:
        request_input = request_validate(
            text=data.get("text"),
            route=data.get("route"),
            location=data.get("location"),
            user=user,
            channel=Channel.API,
            config=config,
            catalog=catalog,
        )
    except ValidationError:
        return None
    processed = await request_process_on_loop(request=request_input, pool=pool)
    if processed is None:
        return None
    log, events = processed
    response: HttpResponseBase
    if answer_format == "sse":
        request = ASGIRequest(scope, body_file)
        response = event_stream_response(request_event_stream_async(events, log))
    else:
        done = await _last_event(events)
        request = ASGIRequest(scope, body_file)
        if isinstance(done, Exception):
            return await sync_to_async(response_for_exception)(request, done)
        response = HttpResponse(
            JSONRenderer().render(request_log_payload(done.log, catalog=done.catalog)),
            status=status.HTTP_201_CREATED,
            content_type=JSONRenderer.media_type,
        )
    for name, value in _drf_headers().items():
        response[name] = value
    for each in middleware:
        response = each.process_response(request, response)
    return response


async def _last_event(events: AsyncGenerator[PipelineEvent]) -> RequestDone | Exception:
    """A JSON answer's wait: the pipeline run to its end (its row final), or what broke it
    (the row marked as an internal error by the pipeline itself)."""
    done: RequestDone | None = None
    try:
        async for event in events:
            if isinstance(event, RequestDone):
                done = event
    except Exception as exc:
        return exc
    finally:
        await events.aclose()
    if done is None:
        return RuntimeError("the request's pipeline ended without its final event")
    return done


@functools.cache
def _requests_path_info() -> str:
    """The submit's path, without the script prefix (as a request's ``path_info``)."""
    return "/" + reverse("api-requests")[len(get_script_prefix()) :]


@functools.cache
def _drf_headers() -> dict[str, str]:
    """The headers DRF adds to the view's every response (``Allow``, and ``Vary`` when it
    has renderers to choose from)."""
    view = RequestListCreateApi()
    view.setup(HttpRequest())  # as as_view() does: HEAD comes with GET
    return dict(view.default_response_headers)
