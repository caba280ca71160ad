"""Learn from the sets measured in the eighth pass (README, "Eighth pass").

Blind sets 18-23 were each measured once and then moved to ``routing/data/learned``, and
two sets of training lines were written for the router's weak spots: understated
emergencies that name no keyword, and non-emergencies that use one. 0009 merges every file
in that directory, so a database created after them already has their lines; this merges
them into a database migrated before they were added.

Only these files, so a line an admin removed from an older set is not brought back; and a
line already in any route (any case) is not added, so one an admin re-labelled to another
route stays there alone. Reversing it does nothing.
"""

import importlib
import json

from django.db import migrations

EIGHTH_PASS = (
    "blind18.jsonl",
    "blind19.jsonl",
    "blind20.jsonl",
    "blind21.jsonl",
    "blind22.jsonl",
    "blind23.jsonl",
    "understated.jsonl",
    "keyword_near_misses.jsonl",
)


def eighth_pass_lines() -> dict[str, list[str]]:
    learned = importlib.import_module("routing.migrations.0009_learned_from_measured_sets")
    by_route: dict[str, list[str]] = {}
    for name in EIGHTH_PASS:
        for line in (learned.LEARNED / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                by_route.setdefault(row["route"], []).append(" ".join(str(row["text"]).split()))
    return by_route


def merge_eighth_pass_lines(apps, schema_editor):
    taxonomy = importlib.import_module("routing.migrations.0003_safety_taxonomy")
    Route = apps.get_model("routing", "Route")
    routes = list(Route.objects.all())
    anywhere = {
        line.strip().casefold() for route in routes for line in route.utterances.splitlines()
    }
    by_route = eighth_pass_lines()
    for route in routes:
        new = [line for line in by_route.get(route.slug, []) if line.casefold() not in anywhere]
        merged = taxonomy._merged(route.utterances, new)
        if merged != route.utterances:
            route.utterances = merged
            route.save(update_fields=["utterances", "updated_at"])
    # Running servers hold the route catalog (shared through the cache): drop it, so they
    # retrain on the merged lines.
    from routing.services import route_catalog_invalidate

    route_catalog_invalidate()


class Migration(migrations.Migration):
    dependencies = [("routing", "0009_learned_from_measured_sets")]

    operations = [migrations.RunPython(merge_eighth_pass_lines, migrations.RunPython.noop)]
