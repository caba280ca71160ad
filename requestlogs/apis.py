"""The request API: submit (JSON or server-sent events), list, read, feedback, escalate; stats.

Views are thin: serializers check the shape of the input, ``requestlogs.services`` does
every write and ``request_log_payload`` is the one definition of the public request object.
"""

import logging
import time as clock
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from adrf.views import APIView as AsyncAPIView
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
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
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from config.parsers import JSONParser
from config.request_context import request_context_of
from config.selectors import system_config_aget
from config.threads import db_connection_release, in_thread
from config.throttling import SubmitRateThrottle
from requestlogs.models import (
    AlertKind,
    AlertState,
    Channel,
    RequestLog,
    RequestStatus,
    RoutingSource,
)
from requestlogs.pipeline import request_answer, request_start
from requestlogs.selectors import (
    request_alerts,
    request_log_payload,
    request_logs_visible_to,
    suggested_route_payload,
)
from requestlogs.services import request_escalate, request_feedback_set
from requestlogs.sse import EVENT_STREAM, EventStream, EventStreamRenderer
from requestlogs.stats import timing_stats
from requestlogs.validation import RequestCreateInputSerializer, request_validate
from routing.selectors import route_catalog_aget, route_catalog_get

logger = logging.getLogger(__name__)

CHANNEL_HEADER = "HTTP_X_CLUBOS_CHANNEL"
STATS_DEFAULT_DAYS = 7
STATS_MAX_DAYS = 366


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
        "possible_emergency": serializers.BooleanField(
            help_text="Routing doubted this request is not an emergency (it was not routed to "
            "one): offer the person a one-tap switch, a re-submit of the same text with "
            '`"route": "emergency"`.'
        ),
    },
)


class RequestTimingsSerializer(serializers.Serializer):
    routing = serializers.FloatField(allow_null=True)
    ttft = serializers.FloatField(allow_null=True, help_text="Time to the answer's first text.")
    assistant = serializers.FloatField(allow_null=True)
    total = serializers.FloatField(allow_null=True)


class AlertOutSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=AlertKind.choices)
    state = serializers.ChoiceField(
        choices=AlertState.choices,
        help_text="`queued` (sending; retried with backoff), `sent`, `failed` (after its "
        "tries: call the manager), `no_channel` (no webhook, or this kind switched off).",
    )
    tries = serializers.IntegerField()
    queued_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(
        allow_blank=True, help_text="Why the last try failed; empty if none."
    )

    class Meta:
        ref_name = "RequestAlert"


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
    alerts = AlertOutSerializer(
        many=True, help_text="The request's Slack alerts, as known when this was answered."
    )


class SubmitAnswerSerializer(RequestObjectSerializer):
    suggested_route = serializers.SlugField(
        allow_null=True,
        help_text="Only when the person chose the route: the slug of the route the local "
        "classifier prefers with high confidence (probability >= 0.8) over the chosen one, "
        "as a hint; else null. The request keeps the chosen route; no extra model call. "
        "Also in the `route`, `done` and `error` events.",
    )

    class Meta:
        ref_name = "SubmitAnswer"


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

* `route` — `{"id", "route": {"slug","name"}, "routing": {"source","confidence","possible_emergency"},
  "timings_ms": {"routing"}, "suggested_route"}` as soon as the route is chosen;
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


# The range a date filter accepts: every request ClubOS can hold, with room for a window's
# arithmetic (a stats window reaches STATS_MAX_DAYS before its end) far from Python's limits.
FILTER_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
FILTER_LATEST = datetime(3000, 1, 1, tzinfo=UTC)


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
    out_of_range = serializers.ValidationError(
        f"Use a moment between {FILTER_EARLIEST:%Y-%m-%d} and {FILTER_LATEST:%Y-%m-%d}."
    )
    try:
        if moment is None:
            assert isinstance(day, date)
            moment = datetime.combine(day + timedelta(days=1) if end_of_day else day, time.min)
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        # In UTC, as the database compares it: 9999-12-31T23:59:59-23:59 has no UTC moment.
        in_utc = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise out_of_range from None
    if not FILTER_EARLIEST <= in_utc <= FILTER_LATEST:
        raise out_of_range
    # PostgreSQL takes offsets up to 15:59; ISO 8601 allows up to 23:59. The same moment in
    # the current time zone compares the same everywhere.
    return timezone.localtime(in_utc)


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


class RequestListCreateApi(AsyncAPIView):
    """Submit a request (on the event loop: ``requestlogs.pipeline``), or list requests.

    DRF's own policies decide who may submit and how: its authentication, permissions,
    throttles and content negotiation run before ``post``, from a thread (adrf), and its
    parser and serializer read the input. A client that negotiates ``text/event-stream``
    gets the answer as events, anyone else as JSON.
    """

    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, EventStreamRenderer]
    parser_classes = [JSONParser]
    # Submits per user (POST only), counted in the shared cache from initial()'s thread.
    throttle_classes = [SubmitRateThrottle]

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
                SubmitAnswerSerializer,
                description="The request, answered and logged; with `Accept: text/event-stream` "
                "the same answer as server-sent events.",
            ),
            (201, EVENT_STREAM): OpenApiResponse(
                OpenApiTypes.STR, description="Server-sent events: route, delta..., done or error."
            ),
            400: VALIDATION_ERROR,
            429: OpenApiResponse(description="Too many submits: wait `Retry-After` seconds."),
        },
    )
    async def post(self, request: Request) -> Response | StreamingHttpResponse:
        started = clock.perf_counter()
        request_input = request_validate(
            data=request.data,
            user=request.user,
            channel=self._channel(request),
            config=await system_config_aget(),
            catalog=await route_catalog_aget(),
            started=started,
            context=request_context_of(request),
        )
        if isinstance(request.accepted_renderer, EventStreamRenderer):
            run = await request_start(request=request_input)
            response = StreamingHttpResponse(
                EventStream(run), status=status.HTTP_201_CREATED, content_type=EVENT_STREAM
            )
            response["Cache-Control"] = "no-cache"
            # Tell nginx-style proxies to pass every frame on at once.
            response["X-Accel-Buffering"] = "no"
            return response
        done = await request_answer(request=request_input)
        body = request_log_payload(done.log, catalog=done.catalog, alerts=done.alerts)
        body.update(suggested_route_payload(done.suggested))
        return Response(body, status=status.HTTP_201_CREATED)

    def get_renderers(self) -> list[Any]:
        # Only a submit streams: anything else answers JSON (or 406).
        renderers = super().get_renderers()
        if self.request.method == "POST":
            return renderers
        return [r for r in renderers if not isinstance(r, EventStreamRenderer)]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """DRF's checks, then its parser, in a thread (adrf): a large body's parsing is not
        the event loop's; then the thread's pooled database connection, if authentication
        used one, goes back before the request waits on the model."""
        try:
            super().initial(request, *args, **kwargs)
            request.data  # noqa: B018 - parsed here, in the thread
        finally:
            db_connection_release()

    def handle_exception(self, exc: Exception) -> Response:
        # An error is JSON even for a client that asked for events: no stream has started.
        if isinstance(getattr(self.request, "accepted_renderer", None), EventStreamRenderer):
            self.request.accepted_renderer = JSONRenderer()
            self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)

    @staticmethod
    def _channel(request: Request) -> str:
        # Only the console (a browser session) is the web channel; a token client is the API.
        from_console = request.META.get(CHANNEL_HEADER, "").strip().lower() == Channel.WEB
        by_session = isinstance(request.successful_authenticator, SessionAuthentication)
        return Channel.WEB if from_console and by_session else Channel.API

    @extend_schema(
        operation_id="requests_list",
        summary="List requests, newest first",
        description="Staff see every request; everyone else their own.",
        parameters=[RequestListFilterSerializer],
        responses={200: PaginatedRequestObjectSerializer, 400: VALIDATION_ERROR},
    )
    async def get(self, request: Request) -> Response:
        return await in_thread(self._list, request)

    def _list(self, request: Request) -> Response:
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
        body = request_log_payload(log, alerts=request_alerts(log))
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
        return Response(request_log_payload(log, alerts=request_alerts(log)))


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
