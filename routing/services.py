"""Writes to routes and their knowledge. Each invalidates the cached route catalog."""

import logging
from typing import Any

from django.db import transaction
from django.db.models import F

from routing.models import KnowledgeEntry, Route
from routing.selectors import route_catalog_snapshot

logger = logging.getLogger(__name__)

# Changing any of these changes what the assistant answers, so cached answers must go.
ANSWER_SHAPING_FIELDS = frozenset({"instructions", "model", "backend"})


def route_catalog_invalidate() -> None:
    route_catalog_snapshot.invalidate()


def _invalidate_now_and_on_commit() -> None:
    # Now, so this transaction's own reads rebuild; on commit, so a reader that cached
    # the old rows while we were writing cannot keep them.
    route_catalog_invalidate()
    transaction.on_commit(route_catalog_invalidate)


@transaction.atomic
def route_save(*, route: Route, changed: set[str] | None = None) -> Route:
    """Save a route edited in place (the admin), bumping its version if its answers change.

    ``changed`` names the fields that were edited; None means "unknown, assume all".
    """
    route.full_clean()
    is_new = route.pk is None
    if not is_new and (changed is None or changed & ANSWER_SHAPING_FIELDS):
        route.version = F("version") + 1
    route.save()
    route.refresh_from_db(fields=["version"])
    _invalidate_now_and_on_commit()
    return route


@transaction.atomic
def route_update(*, route: Route, **changes: Any) -> Route:
    """Change fields of a route by name."""
    for field, value in changes.items():
        if not hasattr(route, field):
            raise TypeError(f"Route has no field {field!r}")
        setattr(route, field, value)
    return route_save(route=route, changed=set(changes))


@transaction.atomic
def route_delete(*, route: Route) -> None:
    """Delete a route no request has used (logged requests protect their route)."""
    route.delete()
    _invalidate_now_and_on_commit()


@transaction.atomic
def route_utterance_add(*, route: Route, text: str) -> bool:
    """Add one example utterance to a route; False if it was already there."""
    text = " ".join(text.split())
    if not text:
        raise ValueError("an utterance cannot be empty")
    locked = Route.objects.select_for_update().get(pk=route.pk)
    existing = {line.strip().casefold() for line in locked.utterances.splitlines()}
    if text.casefold() in existing:
        return False
    locked.utterances = (locked.utterances.rstrip("\n") + "\n" + text).lstrip("\n")
    locked.save(update_fields=["utterances", "updated_at"])
    route.utterances = locked.utterances
    _invalidate_now_and_on_commit()
    return True


@transaction.atomic
def knowledge_entry_save(*, entry: KnowledgeEntry) -> KnowledgeEntry:
    """Save an SOP entry; the offline backend's answers for its route change with it."""
    entry.full_clean()
    entry.save()
    Route.objects.filter(pk=entry.route_id).update(version=F("version") + 1)
    _invalidate_now_and_on_commit()
    return entry


@transaction.atomic
def knowledge_entry_delete(*, entry: KnowledgeEntry) -> None:
    route_id = entry.route_id
    entry.delete()
    Route.objects.filter(pk=route_id).update(version=F("version") + 1)
    _invalidate_now_and_on_commit()
