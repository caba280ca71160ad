"""Learn from the sets measured in the eighth pass (README, "Eighth pass").

Blind sets 18-23 were each measured once and then moved to ``routing/data/learned``, and
two sets of training lines were written for the router's weak spots: understated
emergencies that name no keyword, and non-emergencies that use one. 0009 merges every
file in that directory, so a new database already has them; this runs the same additive
merge again for a database migrated before they were added. Reversing it does nothing.
"""

import importlib

from django.db import migrations


def merge_learned_lines(apps, schema_editor):
    learned = importlib.import_module("routing.migrations.0009_learned_from_measured_sets")
    learned.merge_learned_lines(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("routing", "0009_learned_from_measured_sets")]

    operations = [migrations.RunPython(merge_learned_lines, migrations.RunPython.noop)]
