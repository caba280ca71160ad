"""Whether a submitted request can be accepted: checked before anything is written or called."""

import time
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError

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


def request_validate(
    *,
    text: Any,
    route: Any = AUTO,
    location: Any = "",
    user: User | AnonymousUser | None,
    config: ConfigSnapshot,
    catalog: RouteCatalog,
    channel: str = Channel.API,
    started: float | None = None,
) -> RequestInput:
    """Check a request; raises ValidationError with a message per field."""
    started = time.perf_counter() if started is None else started
    errors: dict[str, list[str]] = {}
    clean_text = text.strip() if isinstance(text, str) else None
    if clean_text is None:
        errors["text"] = ["Describe what is going on (text is required)."]
    elif not clean_text:
        errors["text"] = ["Describe what is going on: the text is empty."]
    elif len(clean_text) > TEXT_MAX_CHARS:
        errors["text"] = [f"Keep it under {TEXT_MAX_CHARS} characters (this is {len(clean_text)})."]
    elif "\x00" in clean_text:
        errors["text"] = ["The text contains a NUL character."]

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
    elif "\x00" in clean_location:
        errors["location"] = ["The location contains a NUL character."]

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
