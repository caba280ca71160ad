"""Merge the fifth pass of the safety taxonomy (a person who cannot get up, threats to the
writer, cut locks and flashlights on camera, stuck lifts, tornado warnings, reaching for the
extinguisher; a chirping detector's battery and a "Tornado Tuesday" post as near-misses)
into the routes.

The same additive merge as 0005, run again over the files as they are now: a line already
there (any case) is not added twice, nothing an admin wrote is changed or removed.
Reversing it does nothing.
"""

import importlib

from django.db import migrations


def merge_fifth_pass(apps, schema_editor):
    update = importlib.import_module("routing.migrations.0005_safety_taxonomy_update")
    update.merge_taxonomy_and_training_lines(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("routing", "0007_safety_taxonomy_fourth_pass")]

    operations = [migrations.RunPython(merge_fifth_pass, migrations.RunPython.noop)]
