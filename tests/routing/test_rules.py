"""The keyword rules: safety first (recall over precision), then best phrase score."""

import json
import threading
from pathlib import Path

import pytest

from routing.selectors import RouteCatalog, RouteSnapshot, route_catalog_build
from routing.strategies import STRATEGIES
from routing.strategies.rules import RulesStrategy, emergency_match, rules_confidence, stem

DATA = Path(__file__).resolve().parents[2] / "routing" / "data"


def _snapshot(spec: dict, pk: int) -> RouteSnapshot:
    return RouteSnapshot(
        id=pk,
        slug=spec["slug"],
        name=spec["name"],
        description=spec["description"],
        enabled=spec.get("enabled", True),
        is_emergency=spec.get("is_emergency", False),
        safety_preamble=spec.get("safety_preamble", ""),
        instructions=spec.get("instructions", ""),
        backend="",
        model="",
        timeout_s=None,
        keywords=tuple(spec["keywords"]),
        priority=spec["priority"],
        version=1,
    )


def make_catalog(specs: list[dict], fingerprint: str = "test") -> RouteCatalog:
    routes = tuple(_snapshot(s, i + 1) for i, s in enumerate(specs))
    routes = tuple(sorted(routes, key=lambda r: (r.priority, r.slug)))
    return RouteCatalog(routes=routes, fingerprint=fingerprint, by_slug={r.slug: r for r in routes})


DEFAULT_SPECS = json.loads((DATA / "routes.json").read_text())
CATALOG = make_catalog(DEFAULT_SPECS, fingerprint="defaults")


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


@pytest.fixture
def rules() -> RulesStrategy:
    return RulesStrategy()


def route_of(rules: RulesStrategy, text: str, catalog: RouteCatalog = CATALOG) -> str | None:
    decision = rules.decide(text, catalog=catalog, config=None)
    return None if decision is None else decision.route.slug


# --------------------------------------------------------------------------- emergencies


@pytest.mark.parametrize(
    "text",
    [
        "power bar in bay 2 sparking",
        "the hdmi switch sparked",
        "sparks from the outlet",
        "customer is bleeding from the nose",
        "he bled all over the mat",
        "member says he has chest pains",
        "the back hallway flooded overnight",
        "bay 3 is flooding",
        "a guest fainted",
        "smoking outlet next to the kiosk",
        "the room is smoky",
        "smoke coming from the projector",
        "customer injured by a ricochet",
        "two injuries in bay 4",
        "the customer was hit by a ball",
        "a teenager fainted while waiting",
        "customer collapsed and isn't breathing",
        "man down in bay 2",
        "customer can't breathe",
        "customer CANNOT breathe!!!",
        "   FIRE!!!   in    BAY   3   ",
        "there's a break-in at Dartmouth",
        "someone broke into the office",
        "power outage at Truro",
        "the power's out",
        "the power is out at Halifax",
        "customer tripped over a bag and hit her head",
        "customer rolled his ankle",
        "a guy is threatening staff",
        "drunk customer getting aggressive",
        "gas smell in the lobby",
        "projector fell and hit a customer",
        "door code not working and there's water pouring from the ceiling",
        "oh no, fire in bay 2",
        "no fire, but a strong burning smell",
        "nobody was hurt but the outlet is still sparking",
        "how do I respond to a fire alarm",
        "a man collapsed at the kiosk",
        "write up an incident report: a customer fell in bay 2",
        "the customer can't stop the bleeding",
        "his finger got cut off in the door",
        "customer was hit by accident with a club",
        "a customer hurt our attendant",
    ],
)
def test_emergency_phrasings_force_the_emergency_route(rules, text):
    decision = rules.decide(text, catalog=CATALOG, config=None)
    assert decision is not None, text
    assert decision.route.slug == "emergency", (text, decision.note)
    assert decision.confidence == 1.0
    assert decision.source == "rules"
    assert decision.elapsed_ms >= 0


@pytest.mark.parametrize(
    "text",
    [
        "unconcious guy in bay 2",
        "think hes having a siezure",
        "ambulence needed",
        "emergancy bay 4",
    ],
)
def test_common_misspellings_of_emergency_words_still_match(rules, text):
    assert route_of(rules, text) == "emergency"


def test_every_emergency_line_in_the_eval_set_is_caught_by_rules_alone(rules):
    missed = [
        row["text"]
        for row in _rows("eval.jsonl")
        if row["route"] == "emergency" and route_of(rules, row["text"]) != "emergency"
    ]
    assert missed == []


def test_emergency_recall_on_the_training_set(rules):
    rows = [r for r in _rows("train.jsonl") if r["route"] == "emergency"]
    missed = [r["text"] for r in rows if emergency_match(r["text"], CATALOG) is None]
    assert len(missed) / len(rows) <= 0.01, missed


def test_near_misses_in_the_eval_set_raise_no_false_alarm(rules):
    alarms = [
        row["text"]
        for row in _rows("eval.jsonl")
        if row["route"] != "emergency" and emergency_match(row["text"], CATALOG) is not None
    ]
    assert alarms == []


@pytest.mark.parametrize(
    "text",
    [
        "how do I fire up the projectors in the morning",
        "fire up the sim in bay 4",
        "fire off an email to the landlord",
        "the Fire TV stick in bay 2 won't load",
        "the projector fell, nobody hurt",
        "TV fell off the bracket overnight, no one was around",
        "kiosk is totally unresponsive",
        "the mouse and keyboard in bay 3 are not responding",
        "trackman not responding to shots",
        "screen went dark in bay 6",
        "monitor flickering",
        "memory leak in TPS makes it slow",
        "the impact screen has a tear, no one got hurt",
        "a ball broke the light cover, no injuries",
        "customer locked out and it's freezing, they're fine",
        "how much is a refund for a broken bay",
        "customer had a family emergency and left early, refund the rest",
        "customer cancelled the booking by accident",
        "write an apology for last night's power outage",
        "reply to this review about the fire alarm going off",
        "what's the policy on refunds",
        "it won't hurt to restart the pc first",
        "overhead light in bay 2 burnt out",
        "they stepped out for a smoke, let them back in",
        "we need to plan the fall league",
        "the session got cut short by the projector",
        "can customers smoke on the patio?",
    ],
)
def test_routine_texts_with_alarming_words_are_not_emergencies(rules, text):
    assert emergency_match(text, CATALOG) is None, text
    assert route_of(rules, text) != "emergency"


def test_a_disabled_emergency_route_is_never_chosen(rules):
    specs = [dict(s, enabled=s["slug"] != "emergency") for s in DEFAULT_SPECS]
    catalog = make_catalog(specs, fingerprint="no-emergency")
    assert emergency_match("fire in bay 3", catalog) is None
    assert route_of(rules, "fire in bay 3", catalog) != "emergency"


def test_emergency_match_returns_the_route_from_the_catalog_it_was_given():
    route = emergency_match("smoke in bay 3", CATALOG)
    assert route is CATALOG.get("emergency")
    assert emergency_match("trackman frozen in bay 3", CATALOG) is None


def test_the_lowest_priority_emergency_route_wins_when_two_match(rules):
    specs = [
        {
            "slug": "safety",
            "name": "S",
            "description": "",
            "is_emergency": True,
            "keywords": ["smoke"],
            "priority": 5,
        },
        {
            "slug": "fire",
            "name": "F",
            "description": "",
            "is_emergency": True,
            "keywords": ["smoke", "fire"],
            "priority": 8,
        },
    ]
    assert route_of(rules, "smoke and fire", make_catalog(specs)) == "safety"


# --------------------------------------------------------------------------- other routes


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("door code not working at the front", "booking"),
        ("customer locked out", "booking"),
        ("refund the customer for tonight", "booking"),
        ("key card won't open the side door", "booking"),
        ("can you extend bay 3 by an hour", "booking"),
        ("trackman frozen in bay 3", "tech"),
        ("projector says no signal", "tech"),
        ("wifi is down at Bedford", "tech"),
        ("kiosk frozen at the front", "tech"),
        ("reply to a google review", "brand"),
        ("what are the membership prices", "brand"),
        ("do we sell gift cards", "brand"),
        ("when does the winter league start", "brand"),
    ],
)
def test_non_emergency_routes_by_keywords(rules, text, slug):
    decision = rules.decide(text, catalog=CATALOG, config=None)
    assert decision is not None
    assert decision.route.slug == slug
    assert 0.5 <= decision.confidence <= 0.95
    assert decision.source == "rules"


@pytest.mark.parametrize(
    "text", ["what's the weather like tomorrow", "tell me a joke", "hello", "", "   ", "?!"]
)
def test_no_keyword_means_no_opinion(rules, text):
    assert rules.decide(text, catalog=CATALOG, config=None) is None


TIE_SPECS = [
    {
        "slug": "alpha",
        "name": "A",
        "description": "",
        "keywords": ["widget", "gadget"],
        "priority": 30,
    },
    {
        "slug": "beta",
        "name": "B",
        "description": "",
        "keywords": ["widget", "widget box"],
        "priority": 20,
    },
    {"slug": "gamma", "name": "C", "description": "", "keywords": ["sprocket"], "priority": 10},
]


def test_a_tie_goes_to_the_lower_priority_with_the_lowest_confidence(rules):
    decision = rules.decide("the widget", catalog=make_catalog(TIE_SPECS), config=None)
    assert decision.route.slug == "beta"
    assert decision.confidence == 0.5


def test_more_matched_phrases_win_over_priority(rules):
    decision = rules.decide("widget and gadget", catalog=make_catalog(TIE_SPECS), config=None)
    assert decision.route.slug == "alpha"
    assert decision.confidence > 0.5


def test_longer_phrases_weigh_more(rules):
    # beta: "widget" + "widget box" (1 + 2) beats alpha: "widget" + "gadget" (1 + 1)
    decision = rules.decide("widget box, gadget", catalog=make_catalog(TIE_SPECS), config=None)
    assert decision.route.slug == "beta"


def test_a_phrase_counts_once_however_often_it_appears(rules):
    decision = rules.decide(
        "widget widget widget gadget sprocket", catalog=make_catalog(TIE_SPECS), config=None
    )
    assert decision.route.slug == "alpha"


def test_confidence_grows_with_the_margin_and_stays_in_bounds():
    assert rules_confidence(1, 1) == 0.5
    assert rules_confidence(2, 1) < rules_confidence(2, 0) < rules_confidence(6, 0)
    assert rules_confidence(1000, 0) <= 0.95
    assert rules_confidence(0, 0) == 0.5


# --------------------------------------------------------------------------- machinery


@pytest.mark.parametrize(
    ("words", "same"),
    [
        (["spark", "sparks", "sparked", "sparking", "sparky"], True),
        (["bleed", "bleeding", "bleeds"], True),
        (["flood", "flooded", "flooding", "floods"], True),
        (["faint", "fainted", "fainting"], True),
        (["smoke", "smoking", "smoky", "smoked", "smokes", "smokey"], True),
        (["injury", "injured", "injuries", "injure"], True),
        (["pain", "pains"], True),
        (["drip", "dripping", "dripped"], True),
        (["police", "policy"], False),
        (["fire", "first"], False),
    ],
)
def test_stem(words, same):
    assert (len({stem(w) for w in words}) == 1) is same


def test_rules_compile_once_per_catalog_fingerprint(rules):
    first = rules.compiled(CATALOG)
    assert rules.compiled(CATALOG) is first
    changed = make_catalog(
        [dict(s, keywords=[*s["keywords"], "zorblax"]) for s in DEFAULT_SPECS], fingerprint="v2"
    )
    second = rules.compiled(changed)
    assert second is not first
    assert route_of(rules, "zorblax", changed) == "emergency"
    assert route_of(rules, "zorblax", CATALOG) is None


@pytest.mark.django_db
def test_toggling_is_emergency_changes_the_fingerprint_and_recompiles(rules):
    from routing.models import Route
    from routing.selectors import route_catalog_build
    from routing.services import route_update

    before = route_catalog_build()
    assert route_of(rules, "smoke coming from the outlet", before) == "emergency"
    route_update(route=Route.objects.get(slug="emergency"), is_emergency=False)
    after = route_catalog_build()
    assert after.fingerprint != before.fingerprint
    decision = rules.decide("smoke coming from the outlet", catalog=after, config=None)
    assert decision is not None
    assert decision.confidence < 1.0


def test_decide_is_thread_safe(rules):
    catalogs = [make_catalog(DEFAULT_SPECS, fingerprint=f"fp{i % 3}") for i in range(6)]
    errors: list[BaseException] = []
    results: list[str | None] = []

    def work(catalog):
        try:
            for _ in range(50):
                results.append(route_of(rules, "sparks from the outlet", catalog))
                results.append(route_of(rules, "door code not working", catalog))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in catalogs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(results) == {"emergency", "booking"}


def test_the_registry_exposes_the_rules_strategy():
    assert STRATEGIES["rules"] is RulesStrategy
    assert RulesStrategy.name == "rules"


@pytest.mark.django_db
def test_rules_on_the_migrated_default_routes(rules):
    catalog = route_catalog_build()
    decision = rules.decide("the power strip sparked", catalog=catalog, config=None)
    assert decision.route.slug == "emergency"
    assert decision.route is catalog.get("emergency")
    assert route_of(rules, "customer locked out, code not working", catalog) == "booking"
    assert route_of(rules, "trackman frozen", catalog) == "tech"
