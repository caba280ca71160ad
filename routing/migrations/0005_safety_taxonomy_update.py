"""Merge the second pass of the safety taxonomy and the new training lines into the routes.

Databases migrated before it hold the taxonomy and ``train.jsonl`` as they were then;
this adds what is missing since (new utterances, near-misses and keywords; new example
lines of ``routing/data/train.jsonl`` for a route that exists), the same additive way as
0003: a line already there (any case) is not added twice, nothing an admin wrote is
changed or removed. Reversing it does nothing.
"""

import importlib
import json
from pathlib import Path

from django.db import migrations

TRAIN = Path(__file__).resolve().parent.parent / "data" / "train.jsonl"


def merge_taxonomy_and_training_lines(apps, schema_editor):
    taxonomy = importlib.import_module("routing.migrations.0003_safety_taxonomy")
    Route = apps.get_model("routing", "Route")
    by_route: dict[str, list[str]] = {}
    with TRAIN.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                by_route.setdefault(row["route"], []).append(str(row["text"]))
    for route in Route.objects.filter(slug__in=list(by_route)):
        merged = taxonomy._merged(route.utterances, by_route[route.slug])
        if merged != route.utterances:
            route.utterances = merged
            route.save(update_fields=["utterances", "updated_at"])
    # Invalidates the shared route catalog, so running servers retrain on the merged lines.
    taxonomy.merge_safety_taxonomy(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("routing", "0004_history")]

    operations = [
        migrations.RunPython(merge_taxonomy_and_training_lines, migrations.RunPython.noop),
    ]
