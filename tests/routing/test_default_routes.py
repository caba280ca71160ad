"""The four default routes the data migration creates, and the labelled data behind them."""

import importlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from django.apps import apps as django_apps

from routing.models import KnowledgeEntry, Route

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "routing" / "data"
SLUGS = ["emergency", "booking", "tech", "brand"]


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.casefold().replace("'", "")))


# --------------------------------------------------------------------------- the routes


@pytest.mark.django_db
def test_the_four_default_routes_exist_in_priority_order():
    routes = list(Route.objects.filter(slug__in=SLUGS))
    assert [r.slug for r in routes] == SLUGS  # Meta.ordering is priority, slug
    assert [r.priority for r in routes] == [10, 20, 30, 40]
    assert all(r.enabled for r in routes)
    assert {r.slug: r.name for r in routes} == {
        "emergency": "Emergency",
        "booking": "Booking & Access",
        "tech": "TechSupport",
        "brand": "BrandTone",
    }


@pytest.mark.django_db
def test_only_the_emergency_route_is_an_emergency_and_it_has_a_safety_preamble():
    routes = {r.slug: r for r in Route.objects.filter(slug__in=SLUGS)}
    assert [s for s, r in routes.items() if r.is_emergency] == ["emergency"]
    preamble = routes["emergency"].safety_preamble
    assert "911" in preamble
    assert 100 <= len(preamble) <= 600
    assert all(not routes[s].safety_preamble for s in ("booking", "tech", "brand"))


@pytest.mark.django_db
@pytest.mark.parametrize("slug", SLUGS)
def test_each_route_is_fully_set_up(slug):
    route = Route.objects.get(slug=slug)
    assert 150 <= len(route.instructions.split()) <= 300
    assert len(route.description) > 100
    assert len(route.utterance_list) >= 70
    assert len(route.keyword_list) >= 30
    entries = list(route.knowledge.all())
    assert len(entries) >= 5
    for entry in entries:
        assert entry.enabled
        assert 60 <= len(entry.body.split()) <= 200, entry.title
        assert entry.keyword_list, entry.title


@pytest.mark.django_db
def test_the_emergency_vocabulary_is_extensive():
    keywords = set(Route.objects.get(slug="emergency").keyword_list)
    assert len(keywords) >= 150
    for word in (
        "fire",
        "smoke",
        "sparks",
        "bleeding",
        "unconscious",
        "chest pain",
        "seizure",
        "flood",
        "leak",
        "burst pipe",
        "power outage",
        "gas smell",
        "break in",
        "weapon",
        "fight",
        "aggressive",
        "threatening",
    ):
        assert word in keywords, word


@pytest.mark.django_db
def test_utterances_come_from_the_training_set_the_safety_taxonomy_then_the_measured_sets():
    train = _rows("train.jsonl")
    taxonomy = json.loads((DATA / "safety_taxonomy.json").read_text())
    learned = [r for path in sorted((DATA / "learned").glob("*.jsonl")) for r in _rows_from(path)]
    for slug in SLUGS:
        stored = Route.objects.get(slug=slug).utterance_list
        expected = [" ".join(r["text"].split()) for r in train if r["route"] == slug]
        for category in taxonomy["categories"]:
            if slug == taxonomy["route"]:
                expected += category["utterances"]
            expected += [n["text"] for n in category["near_misses"] if n["route"] == slug]
        expected += [" ".join(r["text"].split()) for r in learned if r["route"] == slug]
        # A line already there in another case is not added twice (the merge folds case).
        unique: dict[str, str] = {}
        for line in expected:
            unique.setdefault(line.casefold(), line)
        assert stored == list(unique.values())


@pytest.mark.django_db
def test_the_learned_sets_merge_is_idempotent_and_keeps_admin_edits():
    migration = importlib.import_module("routing.migrations.0009_learned_from_measured_sets")
    tech = Route.objects.get(slug="tech")
    learned_line = migration.learned_lines()["tech"][0]
    tech.utterances = "\n".join(
        [*(u for u in tech.utterance_list if u != learned_line), "an admin's own line"]
    )
    tech.save()

    migration.merge_learned_lines(django_apps, None)
    once = {r.slug: r.utterances for r in Route.objects.all()}
    migration.merge_learned_lines(django_apps, None)

    assert {r.slug: r.utterances for r in Route.objects.all()} == once
    tech.refresh_from_db()
    assert learned_line in tech.utterance_list
    assert "an admin's own line" in tech.utterance_list


@pytest.mark.django_db
def test_the_data_migration_is_idempotent_and_keeps_admin_edits():
    migration = importlib.import_module("routing.migrations.0002_default_routes")
    Route.objects.filter(slug="tech").update(instructions="Edited by an admin.")
    KnowledgeEntry.objects.filter(route__slug="brand").first().delete()
    before_routes = Route.objects.count()
    before_entries = KnowledgeEntry.objects.count()

    migration.create_default_routes(django_apps, None)

    assert Route.objects.count() == before_routes
    assert KnowledgeEntry.objects.count() == before_entries + 1  # the deleted one is back
    assert Route.objects.get(slug="tech").instructions == "Edited by an admin."
    migration.create_default_routes(django_apps, None)
    assert KnowledgeEntry.objects.count() == before_entries + 1


# --------------------------------------------------------------------------- the data sets


def test_routes_json_matches_the_design():
    specs = json.loads((DATA / "routes.json").read_text())
    assert [s["slug"] for s in specs] == SLUGS
    for spec in specs:
        assert 5 <= len(spec["sop"]) <= 8
        assert len(set(spec["keywords"])) == len(spec["keywords"])


def test_training_set_has_every_route_well_covered():
    rows = _rows("train.jsonl")
    assert {r["route"] for r in rows} == set(SLUGS)
    counts = Counter(r["route"] for r in rows)
    assert all(counts[s] >= 70 for s in SLUGS), counts
    assert all(r["text"].strip() for r in rows)
    normalised = [_norm(r["text"]) for r in rows]
    assert len(normalised) == len(set(normalised)), "duplicate training lines"


def test_training_set_includes_the_shared_examples():
    shared = ROOT.parent / "shared" / "routing-examples.jsonl"
    if not shared.exists():
        pytest.skip("the shared examples are not next to this checkout")
    train = {(r["text"], r["route"]) for r in _rows("train.jsonl")}
    missing = [r for r in _rows_from(shared) if (r["text"], r["route"]) not in train]
    assert missing == []


def _rows_from(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_eval_set_is_big_enough_and_separate_from_training():
    train = _rows("train.jsonl")
    evaluation = _rows("eval.jsonl")
    counts = Counter(r["route"] for r in evaluation)
    assert set(counts) == set(SLUGS)
    assert all(counts[s] >= 50 for s in SLUGS), counts

    train_norm = {_norm(r["text"]) for r in train}
    overlap = [r["text"] for r in evaluation if _norm(r["text"]) in train_norm]
    assert overlap == []
    eval_norm = [_norm(r["text"]) for r in evaluation]
    assert len(eval_norm) == len(set(eval_norm)), "duplicate eval lines"


def test_eval_lines_are_not_trivially_close_to_training_lines():
    train_sets = [set(_norm(r["text"]).split()) for r in _rows("train.jsonl")]
    close = []
    for row in _rows("eval.jsonl"):
        words = set(_norm(row["text"]).split())
        for other in train_sets:
            if len(words | other) and len(words & other) / len(words | other) >= 0.75:
                close.append(row["text"])
                break
    assert close == []


def test_eval_emergencies_cover_word_endings():
    text = " ".join(_norm(r["text"]) for r in _rows("eval.jsonl") if r["route"] == "emergency")
    for variant in (
        "sparked",
        "sparking",
        "chest pains",
        "bleeding",
        "flooded",
        "fainted",
        "smoking outlet",
    ):
        assert variant in text, variant
