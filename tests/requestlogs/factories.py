"""Factories for people and logged requests, with values a venue would really see."""

import importlib
from datetime import timedelta
from functools import cache
from types import SimpleNamespace

import factory
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone
from factory.django import DjangoModelFactory

from requestlogs.models import (
    Alert,
    AlertKind,
    AlertState,
    Channel,
    RequestLog,
    RequestStatus,
    RoutingSource,
)
from tests.routing.factories import RouteFactory

PASSWORD = "correct horse battery staple"


@cache
def _password_hash() -> str:
    return make_password(PASSWORD)


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    first_name = factory.Iterator(["Maya", "Jordan", "Sam", "Priya", "Lucas"])
    last_name = factory.Iterator(["Chen", "Okafor", "Murphy", "Patel", "Silva"])
    email = factory.LazyAttribute(lambda u: f"{u.username}@clubos.test")
    is_staff = False
    is_superuser = False
    # Every user shares one hash: hashing per user (PBKDF2) would cost a test a second per
    # dozen logged requests. Logging in with PASSWORD still works.
    password = factory.LazyFunction(lambda: _password_hash())

    class Params:
        superuser = factory.Trait(is_staff=True, is_superuser=True)

    @factory.post_generation
    def groups(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        """``UserFactory(groups=["operator"])`` joins the role groups of that name."""
        if create and extracted:
            roles_ensure()
            self.groups.set(Group.objects.filter(name__in=extracted))


def roles_ensure() -> None:
    """Make sure the role groups exist, as the roles migration made them.

    A transactional test elsewhere in the suite flushes the database, migration data
    included; re-running the migration's own function puts the roles back unchanged.
    """
    if Group.objects.filter(name__in=["admin", "operator", "support"]).count() == 3:
        return
    roles = importlib.import_module("requestlogs.migrations.0002_roles")
    roles.create_roles(django_apps, SimpleNamespace(connection=connection))


REQUEST_TEXTS = [
    "TrackMan frozen in bay 3, the screen shows the last shot and won't respond",
    "Customer locked out, the door code from the confirmation email doesn't work",
    "Can we extend a booking in bay 5 by 30 minutes?",
    "Projector in bay 2 is flickering and the image is dim",
    "Write a friendly reply to a 3-star review about slow check-in",
    "Someone wants to buy a gift card for 10 hours, what's the price?",
]


class RequestLogFactory(DjangoModelFactory):
    """A finished, answered request (status ok) routed by the keyword rules."""

    class Meta:
        model = RequestLog

    created_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=5))
    finished_at = factory.LazyAttribute(lambda o: o.created_at + timedelta(seconds=2))
    user = factory.SubFactory(UserFactory)
    channel = Channel.WEB
    location = factory.Iterator(["Bedford", "Dartmouth", "Halifax Downtown", "Truro"])
    text = factory.Iterator(REQUEST_TEXTS)
    requested_route = "auto"
    route = factory.SubFactory(RouteFactory)
    routing_source = RoutingSource.RULES
    confidence = 0.92
    status = RequestStatus.OK
    answer = (
        "1. Restart the TrackMan Performance Studio app from the bay PC.\n"
        "2. If it stays frozen, power-cycle the unit (switch at the back, wait 10 s).\n"
        "3. Still stuck: escalate to tech support with the bay number."
    )
    backend = "offline"
    model = "gpt-4.1-mini"
    tokens_in = 412
    tokens_out = 96
    upstream_calls = 1
    routing_ms = 0.8
    ttft_ms = 412.0
    assistant_ms = 1830.0
    total_ms = 1842.5


class AlertFactory(DjangoModelFactory):
    """A Slack alert about a request, queued a minute ago (set ``state`` and its times)."""

    class Meta:
        model = Alert

    request = factory.SubFactory(RequestLogFactory)
    kind = AlertKind.EMERGENCY
    state = AlertState.QUEUED
    queued_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=1))
