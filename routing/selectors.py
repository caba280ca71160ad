"""Cached reads of the routes.

The request path reads routes through ``route_catalog_get()``: a process-local copy on a
warm path (no database query, at most one small cache read a second). The catalog is plain frozen data. Its ``fingerprint``
changes whenever anything a router learns from changes, so process-local artefacts
(compiled rules, a trained classifier) know when to rebuild.
"""

import hashlib
from dataclasses import dataclass, field

from config.caching import SharedSnapshot
from routing.models import Route

CATALOG_CACHE_KEY = "routing:catalog:v1"
CATALOG_CACHE_TTL_S = 300


@dataclass(frozen=True, slots=True)
class KnowledgeSnapshot:
    title: str
    body: str
    keywords: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RouteSnapshot:
    id: int
    slug: str
    name: str
    description: str
    enabled: bool
    is_emergency: bool
    safety_preamble: str
    instructions: str
    backend: str
    model: str
    timeout_s: float | None
    keywords: tuple[str, ...]
    priority: int
    version: int
    knowledge: tuple[KnowledgeSnapshot, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteCatalog:
    """Every route (enabled or not), in priority order, plus a fingerprint of what routers learn."""

    routes: tuple[RouteSnapshot, ...]
    fingerprint: str
    by_slug: dict[str, RouteSnapshot] = field(default_factory=dict, compare=False, hash=False)

    @property
    def enabled(self) -> tuple[RouteSnapshot, ...]:
        return tuple(r for r in self.routes if r.enabled)

    def get(self, slug: str) -> RouteSnapshot | None:
        return self.by_slug.get(slug)

    def by_id(self, route_id: int) -> RouteSnapshot | None:
        return next((r for r in self.routes if r.id == route_id), None)


def route_snapshot(route: Route) -> RouteSnapshot:
    return RouteSnapshot(
        id=route.pk,
        slug=route.slug,
        name=route.name,
        description=route.description,
        enabled=route.enabled,
        is_emergency=route.is_emergency,
        safety_preamble=route.safety_preamble,
        instructions=route.instructions,
        backend=route.backend,
        model=route.model,
        timeout_s=route.timeout_s,
        keywords=tuple(route.keyword_list),
        priority=route.priority,
        version=route.version,
        knowledge=tuple(
            KnowledgeSnapshot(title=k.title, body=k.body, keywords=tuple(k.keyword_list))
            for k in route.knowledge.all()
            if k.enabled
        ),
    )


def route_catalog_build() -> RouteCatalog:
    """The catalog from the database (two queries)."""
    routes = list(Route.objects.prefetch_related("knowledge").order_by("priority", "slug"))
    digest = hashlib.sha256()
    for r in routes:
        for part in (
            r.slug,
            str(r.enabled),
            str(r.is_emergency),
            str(r.priority),
            r.keywords,
            r.utterances,
        ):
            digest.update(part.encode())
            digest.update(b"\x1f")
    snapshots = tuple(route_snapshot(r) for r in routes)
    return RouteCatalog(
        routes=snapshots,
        fingerprint=digest.hexdigest()[:16],
        by_slug={s.slug: s for s in snapshots},
    )


route_catalog_snapshot: SharedSnapshot[RouteCatalog] = SharedSnapshot(
    CATALOG_CACHE_KEY, CATALOG_CACHE_TTL_S, route_catalog_build, RouteCatalog
)


def route_catalog_get() -> RouteCatalog:
    """The routes as the request path sees them: this process's copy (checked against the
    shared cache at most once a second, see ``config.caching``), else the database."""
    return route_catalog_snapshot.get()


async def route_catalog_aget() -> RouteCatalog:
    """``route_catalog_get`` for the event loop (``SharedSnapshot.aget``)."""
    return await route_catalog_snapshot.aget()


def route_training_examples() -> list[tuple[str, str]]:
    """(text, slug) pairs for every enabled route's example utterances."""
    pairs: list[tuple[str, str]] = []
    for slug, utterances in Route.objects.filter(enabled=True).values_list("slug", "utterances"):
        pairs.extend((line.strip(), slug) for line in utterances.splitlines() if line.strip())
    return pairs
