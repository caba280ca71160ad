"""Whether a submitted request can be accepted: DRF's serializer, checked before anything is
written or called. A refusal is a ``ValidationError`` with a message per field (a 400)."""

import time
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from rest_framework import serializers

from config.request_context import RequestContext
from config.selectors import ConfigSnapshot
from requestlogs.models import Channel
from routing.router import AUTO
from routing.selectors import RouteCatalog

TEXT_MAX_CHARS = 4000
LOCATION_MAX_CHARS = 100
COMMENT_MAX_CHARS = 2000


@dataclass(frozen=True, slots=True)
class RequestInput:
    """An accepted request, with the config and routes it will be served with."""

    text: str
    route: str
    location: str
    user: User | None
    channel: str
    config: ConfigSnapshot
    catalog: RouteCatalog
    started: float = field(default_factory=time.perf_counter)
    context: RequestContext = field(default_factory=RequestContext)
    """The HTTP request's id and log line: the row takes its id."""


class TextField(serializers.CharField):
    """Text only: DRF's CharField would turn 42 or true into a string."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class RequestCreateInputSerializer(serializers.Serializer):
    """The submit's input; the routes to check the route against come in its context."""

    text = TextField(
        max_length=TEXT_MAX_CHARS,
        help_text=f"What is going on, 1-{TEXT_MAX_CHARS} characters.",
        error_messages={
            "required": "Describe what is going on (text is required).",
            "null": "Describe what is going on (text is required).",
            "blank": "Describe what is going on: the text is empty.",
            "invalid": "Describe what is going on as text.",
            "max_length": f"Keep it under {TEXT_MAX_CHARS} characters.",
        },
    )
    route = TextField(
        required=False,
        allow_blank=True,
        allow_null=True,
        default=AUTO,
        help_text="`auto` (default) or an enabled route's slug.",
        error_messages={"invalid": "Route must be 'auto' or a route's slug."},
    )
    location = TextField(
        required=False,
        allow_blank=True,
        allow_null=True,
        default="",
        help_text=f"Where: a venue or bay, up to {LOCATION_MAX_CHARS} characters.",
        error_messages={"invalid": "Location must be text."},
    )

    def validate_route(self, value: str | None) -> str:
        slug = (value or "").lower() or AUTO
        if slug != AUTO:
            catalog: RouteCatalog = self.context["catalog"]
            chosen = catalog.get(slug)
            if chosen is None or not chosen.enabled:
                choices = ", ".join(["auto", *(r.slug for r in catalog.enabled)])
                raise serializers.ValidationError(
                    f"Unknown or disabled route {slug!r}. Choose one of: {choices}."
                )
        return slug

    def validate_location(self, value: str | None) -> str:
        location = " ".join((value or "").split())
        if len(location) > LOCATION_MAX_CHARS:
            raise serializers.ValidationError(
                f"Keep the location under {LOCATION_MAX_CHARS} characters."
            )
        return location


def request_validate(
    *,
    data: Any,
    user: User | AnonymousUser | None,
    config: ConfigSnapshot,
    catalog: RouteCatalog,
    channel: str = Channel.API,
    started: float | None = None,
    context: RequestContext | None = None,
) -> RequestInput:
    """The accepted request, or ``ValidationError`` with a message per field. ``started``:
    when the request arrived (its timings count from there)."""
    serializer = RequestCreateInputSerializer(data=data, context={"catalog": catalog})
    serializer.is_valid(raise_exception=True)
    accepted = serializer.validated_data
    return RequestInput(
        text=accepted["text"],
        route=accepted["route"],
        location=accepted["location"],
        user=user if user is not None and user.is_authenticated else None,
        channel=channel,
        config=config,
        catalog=catalog,
        started=time.perf_counter() if started is None else started,
        context=RequestContext() if context is None else context,
    )
