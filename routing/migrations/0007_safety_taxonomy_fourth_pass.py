"""Merge the fourth pass of the safety taxonomy (cut fingers and the first-aid kit, hazards
that could come down on people, intruders found where nothing is booked, camera and fence
wording, walk-in and battery-backup near-misses) into the routes.

The same additive merge as 0005, run again over the files as they are now: a line already
there (any case) is not added twice, nothing an admin wrote is changed or removed.
Reversing it does nothing.
"""

import importlib

from django.db import migrations


def merge_fourth_pass(apps, schema_editor):
    update = importlib.import_module("routing.migrations.0005_safety_taxonomy_update")
    update.merge_taxonomy_and_training_lines(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("routing", "0006_safety_taxonomy_third_pass")]

    operations = [migrations.RunPython(merge_fourth_pass, migrations.RunPython.noop)]
