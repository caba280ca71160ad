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


def merge_eighth_pass_lines(apps, schema_editor):
    learned = importlib.import_module("routing.migrations.0009_learned_from_measured_sets")
    new = learned.lines_in_no_route(apps, learned.learned_lines(EIGHTH_PASS))
    learned.merge_into_routes(apps, new)


class Migration(migrations.Migration):
    dependencies = [("routing", "0009_learned_from_measured_sets")]

    operations = [migrations.RunPython(merge_eighth_pass_lines, migrations.RunPython.noop)]
