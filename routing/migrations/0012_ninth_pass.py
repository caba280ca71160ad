"""The ninth pass (README, "Ninth pass"): two keyword changes and three training files.

- The Emergency keyword "casing the" (someone scouting a place to rob it) matched any
  "case" followed by a filler: "No smell or smoke, case just feels warm" forced a PC's
  overheating warning to Emergency. It becomes "casing the place / joint / building …",
  as in ``routing/data/safety_taxonomy.json``, where it is still there (0011's replace).
- A person dependent on oxygen is a medical keyword: "oxygen concentrator", "on oxygen",
  "oxygen tank / bottle / mask" ("a regular on a portable oxygen concentrator and its battery
  is showing low", during a power cut, went to TechSupport on blind set 31).
- Lines helpers wrote for the router's weak spots, never measured on:
  ``learned/terse.jsonl`` (texted requests of 2-9 words) and ``learned/alarm_reports.jsonl``
  (alarm, sensor and detector reports explained away, beside live ones), merged as 0010
  merges its files: never a line already in a route.

Reversing it puts "casing the" back and removes nothing else.
"""

import importlib

from django.db import migrations

NARROWED = ("casing the",)
CASING = (
    "casing the place",
    "casing the joint",
    "casing the building",
    "casing the venue",
    "casing the lot",
    "casing the car park",
    "casing the parking lot",
    "casing the store",
    "casing the entrance",
    "casing the doors",
)
OXYGEN = ("oxygen concentrator", "on oxygen", "oxygen tank", "oxygen bottle", "oxygen mask")
NINTH_PASS = ("terse.jsonl", "alarm_reports.jsonl")


def _add_keywords(apps, add: tuple[str, ...]) -> None:
    Route = apps.get_model("routing", "Route")
    for route in Route.objects.filter(slug="emergency"):
        lines = [line.strip() for line in route.keywords.splitlines() if line.strip()]
        present = {line.casefold() for line in lines}
        missing = [k for k in add if k.casefold() not in present]
        if missing:
            route.keywords = "\n".join(lines + missing)
            route.save(update_fields=["keywords", "updated_at"])


def ninth_pass(apps, schema_editor):
    narrower = importlib.import_module("routing.migrations.0011_narrower_swinging_by")
    learned = importlib.import_module("routing.migrations.0009_learned_from_measured_sets")
    _add_keywords(apps, OXYGEN)
    narrower._replace(apps, NARROWED, CASING)  # drops the route catalog
    learned.merge_into_routes(apps, learned.lines_in_no_route(apps, learned.learned_lines(NINTH_PASS)))


def undo(apps, schema_editor):
    narrower = importlib.import_module("routing.migrations.0011_narrower_swinging_by")
    narrower._replace(apps, CASING, NARROWED)


class Migration(migrations.Migration):
    dependencies = [("routing", "0011_narrower_swinging_by")]

    operations = [migrations.RunPython(ninth_pass, undo)]
