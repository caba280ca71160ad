"""Learn from the labelled sets that have been measured: ``routing/data/learned/*.jsonl``.

Each of those files was written blind by someone who never saw the training data, kept as
an evaluation set, and measured before any change was made for it (README, "Routing
safety"). Once measured, a set has given its honest figure; as training lines its requests
(indirect emergencies, near-misses in many voices) teach the classifier more than they can
still tell as a test (README, "Sixth pass": trained on the others, each of the last six
sets scored higher than with the router that had seen none of them).

The same additive merge as 0005: a line already there (any case) is not added twice,
nothing an admin wrote is changed or removed. Reversing it does nothing.
"""

import importlib
import json
from collections.abc import Iterable
from pathlib import Path

from django.db import migrations

LEARNED = Path(__file__).resolve().parent.parent / "data" / "learned"


def learned_lines(names: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Each route's lines from the named files of ``routing/data/learned`` (every file, by
    default), in file-name order."""
    paths = sorted(LEARNED.glob("*.jsonl")) if names is None else [LEARNED / n for n in names]
    by_route: dict[str, list[str]] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                by_route.setdefault(row["route"], []).append(" ".join(str(row["text"]).split()))
    return by_route


def lines_in_no_route(apps, by_route: dict[str, list[str]]) -> dict[str, list[str]]:
    """``by_route`` without the lines already in any route (any case): a later pass's file
    must not bring back a line an admin re-labelled to another route, in a database
    migrated before it was added."""
    Route = apps.get_model("routing", "Route")
    anywhere = {
        line.strip().casefold()
        for utterances in Route.objects.values_list("utterances", flat=True)
        for line in utterances.splitlines()
    }
    return {
        slug: [line for line in lines if line.casefold() not in anywhere]
        for slug, lines in by_route.items()
    }


def merge_into_routes(apps, by_route: dict[str, list[str]]) -> None:
    """Add each route's lines to its examples (additively, as 0003's ``_merged``), then drop
    the cached route catalog."""
    taxonomy = importlib.import_module("routing.migrations.0003_safety_taxonomy")
    Route = apps.get_model("routing", "Route")
    for route in Route.objects.filter(slug__in=list(by_route)):
        merged = taxonomy._merged(route.utterances, by_route[route.slug])
        if merged != route.utterances:
            route.utterances = merged
            route.save(update_fields=["utterances", "updated_at"])
    # Running servers hold the route catalog (shared through the cache): drop it, so they
    # retrain on the merged lines.
    from routing.services import route_catalog_invalidate

    route_catalog_invalidate()


def merge_learned_lines(apps, schema_editor):
    merge_into_routes(apps, learned_lines())


class Migration(migrations.Migration):
    dependencies = [("routing", "0008_safety_taxonomy_fifth_pass")]

    operations = [migrations.RunPython(merge_learned_lines, migrations.RunPython.noop)]
