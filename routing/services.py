"""Writes to routes and their knowledge. Each invalidates the cached route catalog and is
recorded in the row's history as made by ``actor`` (None: no person) through ``via``
(``config.audit``)."""

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import F

from config.audit import AUDIT_SYSTEM, audit_as, audit_baseline_ensure
from routing.models import KnowledgeEntry, Route
from routing.selectors import route_catalog_snapshot

logger = logging.getLogger(__name__)

# Changing any of these changes what the assistant answers, so cached answers must go.
ANSWER_SHAPING_FIELDS = frozenset({"instructions", "model", "backend"})

Actor = AbstractBaseUser | AnonymousUser | None


def route_catalog_invalidate() -> None:
    route_catalog_snapshot.invalidate()


def _invalidate_now_and_on_commit() -> None:
    # Now, so this transaction's own reads rebuild; on commit, so a reader that cached
    # the old rows while we were writing cannot keep them.
    route_catalog_invalidate()
    transaction.on_commit(route_catalog_invalidate)


@transaction.atomic
def route_save(
    *, route: Route, changed: set[str] | None = None, actor: Actor = None, via: str = AUDIT_SYSTEM
) -> Route:
    """Save a route edited in place (the admin), bumping its version if its answers change.

    ``changed`` names the fields that were edited; None means "unknown, assume all".
    """
    route.full_clean()
    if route.pk is not None:
        audit_baseline_ensure(Route, route.pk)
        # The version as it is now, locked until commit: a knowledge entry's bump made since
        # this copy was read is kept, and the history records a number (an F() cannot be).
        current = Route.objects.select_for_update().values_list("version", flat=True)
        route.version = current.get(pk=route.pk)
        if changed is None or changed & ANSWER_SHAPING_FIELDS:
            route.version += 1
    with audit_as(route, actor=actor, via=via):
        route.save()
    _invalidate_now_and_on_commit()
    return route


@transaction.atomic
def route_update(
    *, route: Route, actor: Actor = None, via: str = AUDIT_SYSTEM, **changes: Any
) -> Route:
    """Change fields of a route by name."""
    for field, value in changes.items():
        if not hasattr(route, field):
            raise TypeError(f"Route has no field {field!r}")
        setattr(route, field, value)
    return route_save(route=route, changed=set(changes), actor=actor, via=via)


@transaction.atomic
def route_delete(*, route: Route, actor: Actor = None, via: str = AUDIT_SYSTEM) -> None:
    """Delete a route no request has used (logged requests protect their route)."""
    # Its entries one by one first, so each one's history says who deleted it too (the
    # cascade would record them with no one).
    for entry in route.knowledge.all():
        with audit_as(entry, actor=actor, via=via):
            entry.delete()
    with audit_as(route, actor=actor, via=via):
        route.delete()
    _invalidate_now_and_on_commit()


@transaction.atomic
def route_utterance_add(
    *, route: Route, text: str, actor: Actor = None, via: str = AUDIT_SYSTEM
) -> bool:
    """Add one example utterance to a route; False if it was already there."""
    text = " ".join(text.split())
    if not text:
        raise ValueError("an utterance cannot be empty")
    locked = Route.objects.select_for_update().get(pk=route.pk)
    existing = {line.strip().casefold() for line in locked.utterances.splitlines()}
    if text.casefold() in existing:
        return False
    audit_baseline_ensure(Route, route.pk)
    locked.utterances = (locked.utterances.rstrip("\n") + "\n" + text).lstrip("\n")
    with audit_as(locked, actor=actor, via=via):
        locked.save(update_fields=["utterances", "updated_at"])
    route.utterances = locked.utterances
    _invalidate_now_and_on_commit()
    return True


@transaction.atomic
def knowledge_entry_save(
    *, entry: KnowledgeEntry, actor: Actor = None, via: str = AUDIT_SYSTEM
) -> KnowledgeEntry:
    """Save an SOP entry; the offline backend's answers for its route change with it."""
    entry.full_clean()
    if entry.pk is not None:
        audit_baseline_ensure(KnowledgeEntry, entry.pk)
    with audit_as(entry, actor=actor, via=via):
        entry.save()
    Route.objects.filter(pk=entry.route_id).update(version=F("version") + 1)
    _invalidate_now_and_on_commit()
    return entry


@transaction.atomic
def knowledge_entry_delete(
    *, entry: KnowledgeEntry, actor: Actor = None, via: str = AUDIT_SYSTEM
) -> None:
    route_id = entry.route_id
    with audit_as(entry, actor=actor, via=via):
        entry.delete()
    Route.objects.filter(pk=route_id).update(version=F("version") + 1)
    _invalidate_now_and_on_commit()
