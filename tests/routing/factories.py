"""Factories for routes and their knowledge entries, with values a venue would really use."""

import factory
from factory.django import DjangoModelFactory

from routing.models import KnowledgeEntry, Route


class RouteFactory(DjangoModelFactory):
    """A non-default route; slugs never collide with the four default ones."""

    class Meta:
        model = Route

    slug = factory.Sequence(lambda n: f"events-{n}")
    name = factory.Sequence(lambda n: f"Events & Parties {n}")
    description = (
        "Private events, birthday parties and corporate outings: group bookings, catering, "
        "bay packages and deposits."
    )
    enabled = True
    is_emergency = False
    safety_preamble = ""
    instructions = (
        "You help venue staff with private events. Answer in short numbered steps, quote the "
        "package names exactly, and never promise a discount."
    )
    backend = ""
    model = ""
    timeout_s = None
    keywords = "birthday party\ncorporate event\ngroup booking"
    utterances = (
        "Can we book three bays for a birthday party on Saturday?\n"
        "A company wants a team outing for 20 people next Friday\n"
        "What deposit do we take for a private event?"
    )
    priority = 100


class EmergencyRouteFactory(RouteFactory):
    slug = factory.Sequence(lambda n: f"safety-{n}")
    name = factory.Sequence(lambda n: f"Safety {n}")
    description = "Injury, fire or smoke, flooding, power outage, break-ins."
    is_emergency = True
    safety_preamble = "If anyone is hurt or in danger, call 911 now. Then follow these steps."
    instructions = "Give the emergency procedure first, in short steps. Stay calm and direct."
    keywords = "smoke\nfire\nbleeding\nflooding"
    utterances = "Smoke coming out of the projector in bay 2\nA customer fell and is bleeding"
    priority = 0


class KnowledgeEntryFactory(DjangoModelFactory):
    class Meta:
        model = KnowledgeEntry

    route = factory.SubFactory(RouteFactory)
    title = factory.Sequence(lambda n: f"Party package deposit #{n}")
    body = (
        "1. Take a 50% deposit by card when the booking is confirmed.\n"
        "2. The deposit is refundable up to 7 days before the event.\n"
        "3. Send the confirmation email from the booking system."
    )
    keywords = "deposit\nparty\nrefundable"
    enabled = True
