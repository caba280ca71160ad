"""Merge the third pass of the safety taxonomy (burns described by their symptoms, illness
and dramatic-equipment near-misses, more indirect emergencies) into the routes.

The same additive merge as 0005, run again over the files as they are now: a line already
there (any case) is not added twice, nothing an admin wrote is changed or removed.
Reversing it does nothing.
"""

import importlib

from django.db import migrations


def merge_third_pass(apps, schema_editor):
    update = importlib.import_module("routing.migrations.0005_safety_taxonomy_update")
    update.merge_taxonomy_and_training_lines(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("routing", "0005_safety_taxonomy_update")]

    operations = [migrations.RunPython(merge_third_pass, migrations.RunPython.noop)]
