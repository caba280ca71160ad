"""Create the four default routes (emergency, booking, tech, brand) with their SOP entries.

Reads ``routing/data/routes.json`` (scope, instructions, keywords, SOP) and
``routing/data/train.jsonl`` (example utterances). Idempotent: an existing route or
knowledge entry (matched by slug / route and title) is left as it is, so re-running the
migration never overwrites what admins have edited. Reversing it does nothing.
"""

import json
from collections import defaultdict
from pathlib import Path

from django.db import migrations

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def _load_routes() -> list[dict]:
    return json.loads((DATA_DIR / "routes.json").read_text(encoding="utf-8"))


def _load_utterances() -> dict[str, list[str]]:
    by_route: dict[str, list[str]] = defaultdict(list)
    with (DATA_DIR / "train.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            row = json.loads(line)
            text = " ".join(str(row["text"]).split())
            if text and text not in by_route[row["route"]]:
                by_route[row["route"]].append(text)
    return by_route


def _lines(items: list[str]) -> str:
    return "\n".join(item.strip() for item in items if item.strip())


def create_default_routes(apps, schema_editor):
    Route = apps.get_model("routing", "Route")
    KnowledgeEntry = apps.get_model("routing", "KnowledgeEntry")
    utterances = _load_utterances()
    for spec in _load_routes():
        route, _ = Route.objects.get_or_create(
            slug=spec["slug"],
            defaults={
                "name": spec["name"],
                "description": spec["description"],
                "enabled": True,
                "is_emergency": bool(spec.get("is_emergency", False)),
                "safety_preamble": spec.get("safety_preamble", ""),
                "instructions": spec["instructions"],
                "keywords": _lines(spec.get("keywords", [])),
                "utterances": "\n".join(utterances.get(spec["slug"], [])),
                "priority": spec["priority"],
            },
        )
        for entry in spec.get("sop", []):
            KnowledgeEntry.objects.get_or_create(
                route=route,
                title=entry["title"],
                defaults={
                    "body": entry["body"],
                    "keywords": _lines(entry.get("keywords", [])),
                    "enabled": True,
                },
            )


class Migration(migrations.Migration):
    dependencies = [("routing", "0001_initial")]

    operations = [
        migrations.RunPython(create_default_routes, migrations.RunPython.noop),
    ]
