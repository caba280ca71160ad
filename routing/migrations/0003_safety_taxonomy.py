"""Merge the safety taxonomy (``routing/data/safety_taxonomy.json``) into the routes.

Its keywords join the Emergency route's rules, its utterances the Emergency route's
examples, and each near-miss (a non-emergency that mentions the same things) the examples
of the route it belongs to. Additive and idempotent: a line already there (any case) is
not added twice, nothing an admin wrote is changed or removed, and a route that does not
exist is skipped. Reversing it does nothing.
"""

import json
from pathlib import Path

from django.db import migrations

TAXONOMY = Path(__file__).resolve().parent.parent / "data" / "safety_taxonomy.json"


def _merged(existing: str, additions: list[str]) -> str:
    lines = [line.strip() for line in existing.splitlines() if line.strip()]
    seen = {line.casefold() for line in lines}
    for item in additions:
        item = " ".join(item.split())
        if item and item.casefold() not in seen:
            lines.append(item)
            seen.add(item.casefold())
    return "\n".join(lines)


def merge_safety_taxonomy(apps, schema_editor):
    Route = apps.get_model("routing", "Route")
    taxonomy = json.loads(TAXONOMY.read_text(encoding="utf-8"))
    keywords: list[str] = []
    utterances: dict[str, list[str]] = {taxonomy["route"]: []}
    for category in taxonomy["categories"]:
        keywords += category["keywords"]
        utterances[taxonomy["route"]] += category["utterances"]
        for near_miss in category["near_misses"]:
            utterances.setdefault(near_miss["route"], []).append(near_miss["text"])
    for route in Route.objects.filter(slug__in=list(utterances)):
        if route.slug == taxonomy["route"]:
            route.keywords = _merged(route.keywords, keywords)
        route.utterances = _merged(route.utterances, utterances[route.slug])
        route.save(update_fields=["keywords", "utterances", "updated_at"])
    # Running servers hold the route catalog (shared through the cache): drop it, so the
    # rules and the classifier are rebuilt from the merged lines.
    from routing.services import route_catalog_invalidate

    route_catalog_invalidate()


class Migration(migrations.Migration):
    dependencies = [("routing", "0002_default_routes")]

    operations = [
        migrations.RunPython(merge_safety_taxonomy, migrations.RunPython.noop),
    ]
