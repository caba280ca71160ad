"""Routing safety: the written taxonomy, the held-out set, and hybrid's emergency policy."""

import dataclasses
import importlib
import io
import json
import re
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.apps import apps as django_apps
from django.core.management import call_command

from config.models import EmergencyPolicy
from config.selectors import system_config_get
from config.services import system_config_update
from routing.models import Route
from routing.router import route_decide
from routing.selectors import route_catalog_get
from routing.strategies.hybrid import (
    CLASSIFIER_EMERGENCY_MIN,
    POSSIBLE_EMERGENCY_MIN,
    RULES_OVERRULED_BELOW,
    HybridStrategy,
)
from routing.strategies.rules import emergency_match, hedged

pytestmark = pytest.mark.django_db

DATA = Path(__file__).resolve().parents[2] / "routing" / "data"
TAXONOMY = json.loads((DATA / "safety_taxonomy.json").read_text())
# The Emergency scope of DESIGN.md, one category per line, plus the building hazards.
CATEGORIES = [
    "injury",
    "medical",
    "fire_smoke_gas",
    "flooding_leaks",
    "power_electrical",
    "break_in_intruder",
    "aggressive_threatening",
    "blocked_exits_hazards",
]
# Not an emergency the rules know, but one the classifier gives a real chance (0.37 with
# the shipped data) without it clearing the bar: described, not named.
DOUBTED = "the floor in bay 1 feels soft near the screen"


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.casefold().replace("'", "")))


def decide(text: str, **config_changes):
    config = dataclasses.replace(system_config_get(), routing_strategy="hybrid", **config_changes)
    return async_to_sync(route_decide)(
        text=text, requested="auto", catalog=route_catalog_get(), config=config
    )


# --------------------------------------------------------------------------- the taxonomy


def test_the_taxonomy_has_every_safety_category_with_enough_varied_examples():
    categories = {c["slug"]: c for c in TAXONOMY["categories"]}
    assert list(categories) == CATEGORIES
    for slug, category in categories.items():
        utterances = category["utterances"]
        assert len(utterances) >= 25, slug
        assert len({u.casefold() for u in utterances}) == len(utterances), slug
        assert category["keywords"], slug
        assert len(category["near_misses"]) >= 5, slug
        assert {n["route"] for n in category["near_misses"]} <= {"booking", "tech", "brand"}
    everything = [u for c in categories.values() for u in c["utterances"]]
    # Shouted, misspelt and indirect wording is there, not only textbook sentences.
    assert sum(u.isupper() for u in everything) >= len(CATEGORIES)
    assert any("camera" in u for u in everything) and any("alarm" in u for u in everything)


@pytest.mark.parametrize(
    "text",
    [
        "guy gashed his shin on the frame",  # injury
        "older man is wheezing and clammy",  # medical
        "the outlet is charred and smouldering",  # fire
        "the ceiling is dripping into bay 4",  # flooding
        "lights out, everything went dark, customers inside",  # power
        "monitoring says motion detected in the office",  # break-in
        "a man is threatening the attendant and won't calm down",  # aggression
        "boxes stacked in front of the exit again",  # blocked exit
        "he's WHEEZING and his lips are turning blue",
        "staff got zapped touching the kiosk",
        "someone is prowling round the car park trying door handles",
        # What an alarm panel or a camera reports, not what a person would say.
        "access control: staff entrance DOOR FORCED 01:12",
        "there are people on the roof above bay 2 and we closed at midnight",
        "camera shows a woman behind the front desk after close",
        "some guy is rifling through the drawers in the office",
        "a stranger is going through the lockers in the change room",
    ],
)
def test_the_safety_keywords_hold_across_word_forms(text):
    assert emergency_match(text, route_catalog_get()) is not None


@pytest.mark.parametrize(
    "near_miss",
    [n for c in TAXONOMY["categories"] for n in c["near_misses"]],
    ids=lambda n: n["text"][:40],
)
def test_a_near_miss_stays_on_its_route(near_miss):
    decision = decide(near_miss["text"])
    assert decision.route.slug == near_miss["route"]
    if emergency_match(near_miss["text"], route_catalog_get()) is not None:
        # An emergency word in another sense: the classifier overruled it, and the
        # one-tap switch stays on screen.
        assert decision.possible_emergency is True


@pytest.mark.parametrize(
    "text",
    [
        "refund for the session the power cut ended last week",
        "after the fight back in june he's banned, block his online account",
        "fire alarm test on thursday, reminder for staff",
        "landlord booked the sprinkler inspection for friday morning",
        "keyboard got wet in the leak last night (fixed since), order a new one",
        "halloween copy: screams guaranteed, can you punch it up",
        "who lights the fire pits on the patio before the 7pm group",
        # Third pass: the guards that generalise what the blind sets showed.
        "flood cleanup in the party room wrapped up last month and the drywall is back",
        "customer who broke his wrist skiing wants to pause his membership",
        "after last nights power cut the kiosk lost its time zone",
        "refund the group that was evacuated during last night's fire alarm",
        "the plumber says the leak is fixed, reopen bay 7 online",
        "the planned power shutdown is sunday at 6, how do we park the sims",
        "member is threatening a chargeback over the double booking",
        "bay 2 screen is bleeding colour at the edges",
        "our 'emergency golf fix' ad got a complaint, can you rewrite it",
        "need a reply to a 1 star review about a fight that happened here in march",
        "staff want to know who is CPR trained on the overnight shift",
        "bay 2 still won't wake up after the update",
        # Fourth pass: a negated list, laughter, a job title, a projector's smoke setting.
        "the projector fan is roaring but there is no smell or smoke, just loud",
        "the league guys are on fire tonight haha, extend them another hour",
        "the fire marshal wants a door code for the back entrance on monday",
        "is there a smoke setting on the bay 1 projector, the image looks hazy",
        "the bay 3 pc fan is screaming, no smell, just loud",
        "we hired a fog machine for friday. write a flyer for 'Smoke and Swing' night",
        "a member broke into the top 5 on the leaderboard, can we post about it",
        "the ball feeder display says emergency stop engaged and it won't feed",
        # Fifth pass: a flood of messages, giving blood, a display's burn-in, golf's choke, a
        # scheduled test in the clause, a handled fight, words asked for in the sentence.
        "phones are flooded with calls about the new league, can someone help answer",
        "the bay 5 email inbox got flooded overnight, 300 spam confirmations",
        "we're doing a blood drive with the hospital next month, set up comp bays",
        "does the bay 2 projector have a burn in mode for the new lamp",
        "league wants a 'choke of the week' post, is that on brand",
        "the fire alarm went off during the building's scheduled test, refund the 3pm group",
        "the guys from the fight last night (police already handled it) want to book again",
        "our banner says 'Smoke the Competition', write a flyer to go with it",
    ],
)
def test_history_checks_and_wording_are_not_emergencies(text):
    assert emergency_match(text, route_catalog_get()) is None


@pytest.mark.parametrize(
    "text",
    [
        "someone broke in last night, the back door is smashed",
        "the fire alarm is going off and there's smoke in the hall",
        "after the power went out a customer fell down the stairs",
        "a customer cut his hand last night and it's bleeding again now",
        "sparks from the fire pit set the patio umbrella on fire",
        "the pipe that burst last week is leaking again right now",
        "the guy in bay 2 won't wake up",
        "customer says he will hurt me if I don't refund him",
        "guy sliced his finger and it wont stop bleedin",
        "head wound bay1",
        "no power. all bays. dark.",
        "cook grabbed a hot tray and her skin is blistering",
        "is it a short or a fire? there are sparks behind the bay 4 screen",
        "no alarm going off but smoke is coming from the vent",
        "lol not lol the toaster oven is literally on fire",
        "camera 3 shows a guy trying the office door",
        "cam is showing two people climbing the fence out back",
        "cut my finger on the broken tee, wheres the first aid kit",
        "dropped a weight on his foot, toe is crushed and he cant stand on it",
        "if you touch the bay 2 frame you get a shock, people are in there",
        "someone got in after hours with an old key card and is in bay 1 now",
        "write down the time: a customer just collapsed in bay 3",
        "the mount above bay 5 is pulling out of the ceiling and could come down on someone",
        # Fifth pass: the same words, live.
        "fire dept came and cleared it but now there's smoke again from bay 2",
        "is it a false alarm? the fire alarm is going off and the hall smells of smoke",
        "the smoke alarm needs a battery and I smell something burning in the office",
        "smoke detector in the party room is chirping and the room is hazy",
        "bay 3 flooded with water from the ceiling, phones ringing nonstop",
        "blood all over the floor by the blood drive sign, a donor fainted",
        "woman fell down the front steps and is not getting up",
        "HE SAYS HE WILL HURT ME IF I DONT GIVE A REFUND",
        "storage cage lock was cut and two guys are loading our gear into a van",
        "elevator stuck between floors with kids inside",
        "tornado warning just went off on everyone's phones, 20 people in the bays",
    ],
)
def test_an_incident_happening_now_still_forces_emergency(text):
    assert emergency_match(text, route_catalog_get()) is not None


def test_the_taxonomy_merge_is_idempotent_and_keeps_admin_edits():
    migration = importlib.import_module("routing.migrations.0003_safety_taxonomy")
    emergency = Route.objects.get(slug="emergency")
    emergency.keywords += "\nadmin's own phrase"
    emergency.save()
    before = {r.slug: (r.keywords, r.utterances) for r in Route.objects.all()}

    migration.merge_safety_taxonomy(django_apps, None)

    after = {r.slug: (r.keywords, r.utterances) for r in Route.objects.all()}
    assert after == before
    assert "admin's own phrase" in Route.objects.get(slug="emergency").keyword_list


def test_a_database_migrated_before_the_second_pass_gets_its_lines_once():
    migration = importlib.import_module("routing.migrations.0005_safety_taxonomy_update")
    break_ins = next(c for c in TAXONOMY["categories"] if c["slug"] == "break_in_intruder")
    emergency = Route.objects.get(slug="emergency")
    # As 0003 left a database before this pass: the newest line and keyword not there yet.
    emergency.utterances = "\n".join(
        u for u in emergency.utterance_list if u != break_ins["utterances"][-1]
    )
    emergency.keywords = "\n".join(
        k for k in emergency.keyword_list if k != break_ins["keywords"][-1]
    )
    emergency.save()

    migration.merge_taxonomy_and_training_lines(django_apps, None)
    once = {r.slug: (r.keywords, r.utterances) for r in Route.objects.all()}
    migration.merge_taxonomy_and_training_lines(django_apps, None)

    assert {r.slug: (r.keywords, r.utterances) for r in Route.objects.all()} == once
    emergency.refresh_from_db()
    assert break_ins["utterances"][-1] in emergency.utterance_list
    assert break_ins["keywords"][-1] in emergency.keyword_list


def test_a_database_migrated_before_the_eighth_pass_gets_its_learned_lines_once():
    migration = importlib.import_module("routing.migrations.0010_learned_eighth_pass")
    emergency = Route.objects.get(slug="emergency")
    booking = Route.objects.get(slug="booking")
    # As 0009 left a database migrated before the eighth pass's files were there...
    gone = [" ".join(r["text"].split()) for r in _rows("learned/understated.jsonl")]
    relabelled, new = gone[0], set(gone[1:])
    emergency.utterances = "\n".join(u for u in emergency.utterance_list if u not in gone)
    emergency.save()
    # ...in which an admin had re-labelled one of those texts to Booking, and removed a line
    # of an older learned set from Emergency.
    removed = " ".join(_rows("learned/blind4.jsonl")[0]["text"].split())
    booking.utterances += "\n" + relabelled.upper()
    booking.save()
    Route.objects.filter(pk=emergency.pk).update(
        utterances="\n".join(u for u in emergency.utterance_list if u != removed)
    )

    migration.merge_eighth_pass_lines(django_apps, None)
    once = {r.slug: r.utterances for r in Route.objects.all()}
    migration.merge_eighth_pass_lines(django_apps, None)

    assert {r.slug: r.utterances for r in Route.objects.all()} == once
    emergency.refresh_from_db()
    assert new <= set(emergency.utterance_list)
    assert relabelled not in emergency.utterance_list
    assert removed not in emergency.utterance_list


def test_a_database_with_the_loose_swinging_by_keyword_gets_the_narrow_ones():
    migration = importlib.import_module("routing.migrations.0011_narrower_swinging_by")
    emergency = Route.objects.get(slug="emergency")
    # As 0008 left a database: the loose keyword, none of the narrow ones.
    narrow = {k.casefold() for k in migration.NEW}
    emergency.keywords = "\n".join(
        [*(k for k in emergency.keyword_list if k.casefold() not in narrow), "Swinging by"]
    )
    emergency.save()
    assert emergency_match(
        "Swing by, ya turkeys! too cheeky for the newsletter?", route_catalog_get()
    )

    migration.narrow(django_apps, None)

    emergency.refresh_from_db()
    assert "swinging by" not in {k.casefold() for k in emergency.keyword_list}
    assert narrow <= {k.casefold() for k in emergency.keyword_list}
    catalog = route_catalog_get()
    assert emergency_match("Swing by, ya turkeys! too cheeky for the newsletter?", catalog) is None
    assert emergency_match("can you swing by the Elm Street location", catalog) is None
    assert emergency_match("light fixture swinging by a cable over bay 1", catalog) is not None
    # An admin who removed the keyword does not get it, or the narrow ones, back.
    Route.objects.filter(pk=emergency.pk).update(
        keywords="\n".join(k for k in emergency.keyword_list if k.casefold() not in narrow)
    )
    migration.narrow(django_apps, None)
    emergency.refresh_from_db()
    assert not narrow & {k.casefold() for k in emergency.keyword_list}
    assert (
        emergency_match("light fixture swinging by a cable over bay 1", route_catalog_get()) is None
    )


# --------------------------------------------------------------------------- the data sets


def test_no_evaluation_line_is_trained_on_or_close_to_a_taxonomy_or_learned_line():
    taxonomy = [u for c in TAXONOMY["categories"] for u in c["utterances"]] + [
        n["text"] for c in TAXONOMY["categories"] for n in c["near_misses"]
    ]
    learned = [
        r["text"]
        for p in sorted((DATA / "learned").glob("*.jsonl"))
        for r in _rows(f"learned/{p.name}")
    ]
    trained = [_words(t) for t in taxonomy + learned]
    close = []
    for name in sorted(p.name for p in DATA.glob("eval*.jsonl")):
        for row in _rows(name):
            words = _words(row["text"])
            if any(len(words & t) / len(words | t) >= 0.75 for t in trained):
                close.append(row["text"])
    assert close == []


def test_the_held_out_set_is_big_labelled_and_categorised():
    rows = _rows("eval_heldout.jsonl")
    assert len(rows) >= 150
    assert {r["route"] for r in rows} == {"emergency", "booking", "tech", "brand"}
    assert all(r.get("category") for r in rows)
    assert sum(r["route"] == "emergency" for r in rows) >= len(CATEGORIES) * 5


# --------------------------------------------------------------------------- the policy


def test_a_doubted_request_keeps_its_route_with_the_switch_and_no_llm_call(openai_upstream):
    decision = decide(DOUBTED, emergency_policy=EmergencyPolicy.SWITCH)

    assert not decision.route.is_emergency
    assert decision.possible_emergency is True
    # Emergency was a real possibility: no other route is reported as a sure thing.
    assert decision.confidence <= 1 - POSSIBLE_EMERGENCY_MIN
    assert decision.source == "local"
    assert openai_upstream.calls == []


def test_a_doubted_request_is_asked_of_the_llm_under_the_llm_policy(openai_upstream):
    openai_upstream.configure(route_answer="emergency", route_confidence=0.9)

    decision = decide(DOUBTED, emergency_policy=EmergencyPolicy.ASK_LLM)

    assert decision.source == "llm"
    assert decision.route.slug == "emergency"
    assert decision.possible_emergency is False
    assert len(openai_upstream.calls) == 1


def test_the_llm_policy_without_an_llm_falls_back_to_the_switch():
    decision = decide(DOUBTED, emergency_policy=EmergencyPolicy.ASK_LLM)
    assert decision.possible_emergency is True
    assert not decision.route.is_emergency


def test_a_doubted_request_goes_to_emergency_under_the_emergency_policy():
    decision = decide(DOUBTED, emergency_policy=EmergencyPolicy.EMERGENCY)
    assert decision.route.slug == "emergency"
    assert decision.possible_emergency is False
    assert POSSIBLE_EMERGENCY_MIN <= decision.confidence < CLASSIFIER_EMERGENCY_MIN


@pytest.mark.parametrize("policy", list(EmergencyPolicy))
def test_clear_requests_are_not_doubted_under_any_policy(policy):
    tech = decide("TrackMan frozen in bay 3", emergency_policy=policy)
    assert (tech.route.slug, tech.possible_emergency) == ("tech", False)
    fire = decide("smoke pouring out of the projector", emergency_policy=policy)
    assert (fire.route.slug, fire.source, fire.possible_emergency) == ("emergency", "rules", False)


def test_the_policy_is_a_system_setting_the_admin_chooses():
    assert system_config_get().emergency_policy == EmergencyPolicy.SWITCH
    system_config_update(emergency_policy=EmergencyPolicy.ASK_LLM)
    assert system_config_get().emergency_policy == EmergencyPolicy.ASK_LLM


# --------------------------------------------------------------------------- measuring it


def test_evaluate_router_reports_safety_figures_per_category(tmp_path):
    path = tmp_path / "set.jsonl"
    lines = [
        {"text": "smoke pouring out of the projector", "route": "emergency", "category": "fire"},
        {"text": DOUBTED, "route": "emergency", "category": "building"},
        {"text": "TrackMan frozen in bay 3", "route": "tech", "category": "tech"},
        {"text": "reminder: fire drill next tuesday", "route": "brand", "category": "near_miss"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = io.StringIO()

    call_command(
        "evaluate_router", str(path), "--policy", "switch", "--json", "--show-errors", stdout=out
    )

    report = json.loads(out.getvalue().strip().splitlines()[-1])
    assert report["emergency_recall"] == 0.5
    assert report["emergency_recall_with_switch"] == 1.0
    assert report["false_emergencies"] == 0.0
    assert report["possible_emergency_share"] == 0.25
    assert report["llm_share"] == 0.0
    assert report["per_category"]["building"]["emergency_recall"] == 0.0
    assert report["per_category"]["fire"]["emergency_recall"] == 1.0
    assert report["per_category"]["near_miss"]["false_emergency_count"] == 0
    text = out.getvalue()
    assert "emergency recall: 50.0%" in text and "category" in text
    assert re.search(r"emergency -> \w+ +[0-9.]+ local +!", text)

    ask = io.StringIO()
    call_command("evaluate_router", str(path), "--policy", "llm", "--json", stdout=ask)
    asked = json.loads(ask.getvalue().strip().splitlines()[-1])
    assert asked["llm_share"] == 0.25 and asked["emergency_recall_if_llm_right"] == 1.0


def test_evaluate_router_still_reads_files_without_categories(tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps({"text": "TrackMan frozen in bay 3", "route": "tech"}) + "\n")
    out = io.StringIO()
    call_command("evaluate_router", str(path), "--json", stdout=out)
    report = json.loads(out.getvalue().strip().splitlines()[-1])
    assert report["accuracy"] == 1.0 and report["per_category"] == {}
    assert report["emergency_recall"] is None and report["false_emergencies"] == 0.0


# --------------------------------------------------------------------------- the classifier's say


def test_an_emergency_word_in_another_sense_is_overruled_by_the_classifier_and_doubted():
    text = "the picture on the bay 4 projector is on fire since the new lamp, so crisp"
    assert emergency_match(text, route_catalog_get()) is not None

    decision = decide(text, emergency_policy=EmergencyPolicy.SWITCH)

    assert decision.route.slug == "tech"
    assert decision.possible_emergency is True
    # The emergency policy still sends an overruled keyword to Emergency.
    assert decide(text, emergency_policy=EmergencyPolicy.EMERGENCY).route.slug == "emergency"


def test_a_keyword_the_classifier_also_reads_as_an_emergency_still_forces_it():
    decision = decide("the projector is on fire, flames coming out of the vent")
    assert (decision.route.slug, decision.source) == ("emergency", "rules")


def _emergency_chance(text: str) -> float:
    catalog = route_catalog_get()
    probs = HybridStrategy().local.route_probabilities(text, catalog)
    return sum(p for slug, p in probs.items() if catalog.by_slug[slug].is_emergency)


@pytest.mark.parametrize(
    ("text", "route"),
    [
        (
            "bay 7 kid had a nosebleed earlier from the dry air, mom cleaned him up and they "
            "kept playing. she wants the rest of the session moved to saturday",
            "booking",
        ),
        (
            "our new cocktail is called the Smoke Show, can you write two lines for the drinks board",
            "brand",
        ),
    ],
)
def test_a_long_message_the_classifier_reads_as_no_emergency_overrules_its_keyword(text, route):
    # An incident already over with a request about it, a drink's name: the keyword is there,
    # the classifier gives the whole message well under the bar, and it says enough to judge.
    assert emergency_match(text, route_catalog_get()) is not None
    assert _emergency_chance(text) < RULES_OVERRULED_BELOW

    decision = decide(text, emergency_policy=EmergencyPolicy.SWITCH)

    assert (decision.route.slug, decision.source) == (route, "local")
    assert decision.possible_emergency is True


@pytest.mark.parametrize(
    "text",
    [
        "text the manager on call for me: fire in bay 3, we called 911, everyone is outside",
        "update the google listing hours please, we're closing now because a man with a gun "
        "was seen in the parking lot",
    ],
)
def test_an_emergency_added_after_a_request_keeps_its_keyword(text):
    # The request makes the whole message read as BrandTone; the clause with the keyword,
    # alone, is an emergency.
    assert _emergency_chance(text) < RULES_OVERRULED_BELOW

    decision = decide(text)

    assert (decision.route.slug, decision.source) == ("emergency", "rules")


@pytest.mark.parametrize(
    "text",
    [
        # A symptom the wording guard set aside ("post on the website"): whatever the
        # classifier says (0.01 here).
        "can you post on the website that we're closed for the rest of the night, we smell "
        "gas near the furnace",
        # Another keyword it set aside, which the classifier gives a real chance (0.26).
        "please reply to the customer's email later, right now a customer had a heart attack "
        "in bay 4",
    ],
)
def test_a_keyword_the_guards_set_aside_still_raises_the_switch(text):
    assert emergency_match(text, route_catalog_get()) is None

    decision = decide(text, emergency_policy=EmergencyPolicy.SWITCH)

    assert decision.possible_emergency is True


def test_a_terse_keyword_message_the_classifier_rules_out_is_overruled_and_doubted():
    text = "book bay 2 for the police league"
    assert emergency_match(text, route_catalog_get()) is not None

    decision = decide(text, emergency_policy=EmergencyPolicy.SWITCH)

    assert (decision.route.slug, decision.possible_emergency) == ("booking", True)


def test_a_sentence_keeps_a_keyword_standing_only_when_it_reads_as_an_emergency_alone():
    from routing.strategies.hybrid import PIECE_STANDS, _segments

    text = (
        "So first, nobody's hurt and nothing's burning. The burning smell earlier was the new "
        "carpet glue per the installer, gone now. What I need is the bay 8 PC talking to the "
        "TrackMan again."
    )
    # The middle sentence alone gives Emergency a real chance, but has lost "nobody's hurt".
    assert emergency_match(text, route_catalog_get()) is not None
    assert _emergency_chance(text) < RULES_OVERRULED_BELOW
    assert RULES_OVERRULED_BELOW <= max(map(_emergency_chance, _segments(text))) < PIECE_STANDS

    decision = decide(text, emergency_policy=EmergencyPolicy.SWITCH)

    assert (decision.route.slug, decision.possible_emergency) == ("tech", True)


@pytest.mark.parametrize(
    "text", ["popcorn machine burning in the lounge", "blood on the bay 4 mat"]
)
def test_a_terse_keyword_message_is_forced_though_the_classifier_doubts_it(text):
    # Six words are mostly their keyword: a chance the classifier gives a long message
    # (under RULES_OVERRULED_BELOW) does not set this one's keyword aside.
    assert 0 < _emergency_chance(text) < RULES_OVERRULED_BELOW

    decision = decide(text)

    assert (decision.route.slug, decision.source) == ("emergency", "rules")


def test_an_emergency_buried_in_another_request_raises_the_switch():
    text = (
        "sorry the booking page is slow again tonight. some huge drunk dude keeps "
        "squaring up to people at the bar and snatching their drinks"
    )
    whole = decide(text)
    assert whole.route.is_emergency or whole.possible_emergency


def test_a_dismissed_emergency_word_keeps_the_classifier_from_routing_there_alone():
    from routing.strategies.rules import emergency_assess

    text = "URGENT emergency fix needed, GSPro crashes every time someone loads Pebble"
    assessment = emergency_assess(text, route_catalog_get())
    assert assessment.route is None and assessment.dismissed == ("emergency",)

    decision = decide(text)

    assert decision.route.slug == "tech"


def test_a_dismissed_emergency_word_does_not_hold_back_a_classifier_that_is_sure():
    from routing.strategies.hybrid import DISMISSED_STILL_ROUTES
    from routing.strategies.rules import emergency_assess

    # "last night's storm" reads as over; the water still coming in is not.
    text = "last night's storm left water pouring through the ceiling in bay 6 and its still coming"
    assessment = emergency_assess(text, route_catalog_get())
    assert assessment.route is None and assessment.dismissed == ("water pouring",)

    decision = decide(text)

    assert decision.route.is_emergency
    assert decision.source == "local" and decision.confidence >= DISMISSED_STILL_ROUTES


@pytest.mark.parametrize("text", ["hi there", "hello?"])
def test_two_words_the_rules_do_not_know_never_page_a_manager(text):
    decision = decide(text)

    assert not decision.route.is_emergency


@pytest.mark.parametrize(
    "text",
    [
        "the electrician is doing a planned power shutdown sunday 6am, how do we shut the bays down",
        "write a post saying the back hallway lights are all back after last week",
    ],
)
def test_a_text_that_says_it_is_not_live_is_never_called_an_emergency_by_the_classifier_alone(
    text,
):
    assert hedged(text)
    decision = decide(text)
    assert not (decision.route.is_emergency and decision.source == "local")


# A hostile review of the fifth pass: real emergencies worded to slip past its guards (a
# resolution that is negated, asked, promised or someone else's; a battery that is not the
# cause; a walk-in cooler; words asked for later in the text).
FIFTH_PASS_REVIEW = [
    "Fire in the back storage room, this is NOT a false alarm, people still inside",
    "Fire alarm going off, I don't think it's a false alarm",
    "Fire alarm going off, pretty sure it is not a false alarm, I smell something",
    "Fire alarm going off and smoke in hallway, the panel is not all green",
    "Fire alarm going off and nobody has handled it",
    "Gas smell in the bathroom for an hour and nobody has handled it",
    "Water leaking into the electrical panel, it hasn't been handled",
    "Shots fired in the parking lot, police haven't cleared it, we're sheltering inside",
    "Bomb threat called in to the front desk, cops haven't cleared it, do we evacuate",
    "Intruder in the back office, I don't think it's all good now",
    "Electrical fire in bay 7, extinguisher emptied, it is definitely not all good now",
    "Break in at the back door, glass everywhere, i dont think it turned out fine, someone's inside",
    "Kitchen fire, I thought I handled it with the extinguisher, it's spreading to the wall",
    "Gas leak smell by the furnace, landlord said he handled it last week, it's back and strong",
    "Gas leak in the kitchen, manager says it's all handled, I can still smell it strong",
    "Guy threatening staff with a golf club, security handled it last time, he's back and swinging",
    "Fight in the parking lot, 4 guys, manager on duty said he handled it and walked away, they're still swinging",
    "Guy with a gun in the lobby, 911 told me they handled it and are on their way",
    "Guy with a knife at the front desk, called police, said they'd have it all handled in 10 min",
    "Someone broke into the building, alarm company said it's all handled, I can hear him in the back",
    "Someone broke in tonight, the alarm company marked it a false alarm, the guy is still on camera in the back room",
    "Pipe burst in the bathroom, the plumber I called said it'll be all fixed tomorrow, water is up to the carpet in bay 1",
    "Water main broke, lobby flooding, plumber says he's got it all handled in an hour, water is at the bay 1 outlets",
    "Water pouring from the ceiling onto the bay 2 projector, need it taken care of ASAP",
    "Sparks shooting out of the breaker panel, please tell me this is taken care of by someone",
    "Guy bleeding bad from his forehead after a club hit him, need this taken care of",
    "Gas smell really strong in the lobby, I cleared it of customers, what do I do",
    "Flames in the kitchen, the extinguisher is taken care of, it's not out",
    "Gas smell in the lobby, got everyone out, all handled, gas company not here yet",
    "CO alarm beeping 4 times in a row, it's not the low battery chirp, 2 staff with headaches",
    "CO alarm went off, battery is fine, people have headaches",
    "Carbon monoxide alarm in the furnace room won't stop, we swapped the batteries and it keeps going off",
    "Carbon monoxide detector going off, it's hardwired with battery backup so it's real, getting people out",
    "Smoke detector going off, not the battery, there's haze in bay 2",
    "Smoke detector in the kitchen going off nonstop, it's hardwired with a battery backup, cant find the source",
    "The fire alarm in the party room is going off and it has a fresh battery",
    "Bay 3 flooded by the walk in cooler line, water up to the power strips",
    "Server closet flooded by the walk in freezer drain, water near the breaker panel",
    "Restroom flooded with people inside and water touching the outlets",
    "We're under a flood watch and now water is coming under the back door into the electrical room",
    "Guy is coughing up blood red foam in bay 3",
    "Guy collapsed not breathing in bay 2, sorry I can't write the response to that email now",
    "Someone is having a seizure, help me write a reply to 911 dispatcher text",
    "Armed robbery in progress, write a response to police? what do I say",
    "Fire in bay 2, I'll write a response to the group chat later",
    "Scheduled software update on all sims tonight, trackman license renewal and projector calibration for bay 1 to 6, and the printer is out of toner. also smoke coming out of the bay 6 projector",
    "Smoke in bay 5 can't tell if it's a false alarm please send someone",
    "HE SAYS HE WILL HURT ME IF I DONT GIVE REFUND",
]


@pytest.mark.parametrize("text", FIFTH_PASS_REVIEW)
def test_real_emergencies_from_the_fifth_pass_review_reach_emergency(text):
    assert decide(text).route.is_emergency


# A second review: detectors with a battery that is not the cause, places flooded by a sign
# or a window, kicking and choking, resolutions about something else, hedge words in the
# emergency's own sentence after a list of chores, words asked for in another sentence.
SECOND_REVIEW = [
    "CO detector in the back office is beeping nonstop, I put a new battery in it last week so its not that",
    "co detector display says 85ppm, its not a dead battery, it just got a new battery",
    "Smoke alarm in bay 5 is ringing and won't shut off, we just put a new battery in yesterday",
    "CO alarm reads 200 with new battery, staff have headaches",
    "smoke detector in bay 3 is beeping like crazy, 9v battery is new. smells weird in there",
    "smoke detector above bay 4 is chirping and I see haze near the ceiling, new battery did nothing",
    "the smoke detectors all started beeping at once, I thought it was the dead battery but now the hallway is hazy",
    "Our carbon monoxide alarm keeps beeping, we put a new battery in and it still does it, two staff feel sick",
    "CO alarm beeping 4 times every few seconds even after the new battery. should we get everyone out?",
    "smoke alarm is beeping loud and there's a haze in bay 6, it had a low battery light earlier",
    "Smoke detector in the kitchen is beeping non stop and the fryer area is hazy, changed the 9v already",
    "fire alarm pulled by a guest, bells ringing everywhere, the panel says low battery too",
    "Fire alarm is ringing through the whole building, panel says battery low, do we evacuate",
    "The fire alarms are flashing and beeping everywhere and the panel shows low battery. customers are confused",
    "co detector shows 300 ppm and the 9v is new, the furnace room door is open",
    "fire alarm activated at 11pm and the lobby smells off, battery is dead on the keypad so I cant silence it",
    "smoke alarm keeps triggering in bay 8 even with a new battery and the projector is really hot",
    "CO alarm is flashing red, new battery, customers say they have headaches and feel sick",
    "fire alarm won't shut up and the battery is low on the panel, bay 1 projector smells hot",
    "fire alarm sounded in the whole building, panel shows low battery, do we get everyone out",
    "the fire alarms went crazy and the strobes are flashing, panel says battery low",
    "the CO alarm in the furnace room triggered and the staff in the office feel lightheaded, it has a new battery",
    "co detector beeping nonstop after I put a new battery in, getting a headache in the office",
    "smoke detector in the office keeps beeping even with a new 9v, smells like something plasticky",
    "Mens room is flooding by the exit sign, water all the way to bay 1",
    "The hallway is flooding by the sign in kiosk, pipe under the sink let go",
    "kitchen floor is flooding by the orders window, cant find the main valve",
    "Front entrance flooded by the tickets window after the storm drain backed up, customers walking through it",
    "the lobby is flooding, with requests from guests to move their cars, water keeps rising",
    "Called you and left a voicemail - basement is flooding",
    "check your inbox - bay 6 flooded, pics attached",
    "the phone room is flooded, water coming from the ceiling tiles",
    "someone is kicking on the back door trying to get in, its 1am and Im alone",
    "guy kicked on the office door until the frame split, hes still in the hallway",
    "customer got knocked down and kicked on the ground outside bay 3",
    "a guy is getting kicked on the floor by two others in bay 5",
    "they knocked him down and kept kicking on the ground, hurry",
    "customer was coughing and choking up on his water, now hes not talking",
    "he choked up on a piece of steak and cant talk",
    "the hot screen burned a kid's hand in bay 2, he is crying",
    "the projector screen is burning!! get the extinguisher",
    "the bay 3 projector is smoking and sparking right now. I still owe you the event copy for saturday, sorry",
    "water pouring through the ceiling in bay 2, ill send the ad copy later",
    "theres a fire in the dumpster out back, we called it in. Can you write a shoutout for the fire crew after",
    "someone pounding on the back door at 3am, cameras all green but i can hear them",
    "someone is rattling the back door handle at 2am, the door sensor shows all green but I can see a shadow",
    "a guy is walking around inside the closed building on the camera at 4am, cameras all green on the app",
    "the front door glass has a big hole in it and the register drawer is on the floor, cameras all green on the app",
    "theres a guy crouched behind the dumpster watching the staff exit, manager already handled the bookings for tonight",
    "man in bay 4 grabbed his left arm and sat down, he is sweating buckets, the alarm panel shows all green",
    "kid ate a cookie with nuts and his face is puffing up, I cleared it with the owner to stay open",
    "the back stairwell is filling with a haze and it smells like a campfire, manager already handled the bookings for tonight",
    "ceiling above bay 3 is bowing down with water, I cleared it with the owner to stay open",
    "Trackman in bay 2 lost calibration and the kiosk wont print receipts. Also the panel behind bay 3 is sparking, the inspection guy who came for the sprinklers saw it",
    "Trackman in bay 2 lost calibration and the kiosk wont print receipts. Also the outlet in bay 5 is smoking, the electrician we scheduled hasnt shown",
    "Trackman in bay 2 lost calibration and the kiosk wont print receipts. Also the emergency exit is chained shut, we had our fire inspection scheduled for today",
    "Can you move the Smith booking from 6 to 7 and refund the deposit for bay 4? Also the panel behind bay 3 is sparking, the inspection guy who came for the sprinklers saw it",
    "Trackman in bay 2 lost calibration, the kiosk wont print receipts, bay 5 projector is flickering and the wifi keeps dropping on the tablets. Also a man climbed the fence out back, the alarm company said all green",
    "Trackman in bay 2 lost calibration, the kiosk wont print receipts, bay 5 projector is flickering and the wifi keeps dropping on the tablets. Also two guys fighting in the parking lot, I cleared it once already and they came back",
    "Trackman in bay 2 lost calibration, the kiosk wont print receipts, bay 5 projector is flickering and the wifi keeps dropping on the tablets. Also a guy is threatening staff at the front desk, security already handled it once tonight",
    "Trackman in bay 2 lost calibration, the kiosk wont print receipts, bay 5 projector is flickering and the wifi keeps dropping on the tablets. Also water pouring through the ceiling onto bay 7, the roof repair we planned is next month",
    "Trackman in bay 2 lost calibration, the kiosk wont print receipts, bay 5 projector is flickering and the wifi keeps dropping on the tablets. Also theres smoke coming from the ceiling above bay 3, the test of the new projector mount is running",
    "Trackman in bay 2 lost calibration, the kiosk wont print receipts, bay 5 projector is flickering and the wifi keeps dropping on the tablets. Also someone broke in through the back window, cameras were all green on my phone",
    "Trackman in bay 2 lost calibration, the kiosk wont print receipts, bay 5 projector is flickering and the wifi keeps dropping on the tablets. Also theres a gas smell by the water heater, the plumber we scheduled is not coming till monday",
    "Trackman in bay 2 lost calibration, the kiosk wont print receipts, bay 5 projector is flickering and the wifi keeps dropping on the tablets. Also a drunk guy is swinging a club at people near bay 6, I handled it before but hes back",
    "Trackman in bay 2 lost calibration, the kiosk wont print receipts, bay 5 projector is flickering and the wifi keeps dropping on the tablets. Also the sprinkler went off in bay 2 and water is everywhere, the system test is not until june",
    "Trackman in bay 2 lost calibration, the kiosk wont print receipts, bay 5 projector is flickering and the wifi keeps dropping on the tablets. Also a woman slipped on the wet floor by the restroom and cant get up, I cleared it with the mop",
    "Fire in the kitchen, everyone out. can you reword this for the group chat",
    "smoke coming out of the kitchen hood, evacuating. ill write a notice for the door",
    "gas smell in the back, leaving now, proofread this before I send it to staff",
    "the bay 4 screen caught fire during testing, flames still going",
    "the CO detector wont stop beeping, new battery, what do I do",
    "the projector screen is burning, flames on the bottom corner",
]


def test_a_drawn_knife_the_classifier_reads_as_a_review_is_still_one_tap_away():
    # Known miss: the classifier gives Emergency < 0.2 and "knife" is a keyword it may
    # overrule ("staff pulled a knife out to cut the cake"); the person gets the switch.
    text = "Man pulled a knife at the front desk, I was about to write a reply to a review"
    decision = decide(text)
    assert decision.route.is_emergency or decision.possible_emergency


@pytest.mark.parametrize("text", SECOND_REVIEW)
def test_real_emergencies_from_the_second_review_reach_emergency(text):
    assert decide(text).route.is_emergency


@pytest.mark.parametrize(
    "text",
    [
        "this price increase will hurt me, can I pause my membership",
        "my wrist will hurt me tomorrow lol can I move my lesson",
        "the guy in bay 6 is pointing a gun at the screen in the zombie shooter game",
        "staff pulled a knife out to cut the birthday cake",
    ],
)
def test_a_figure_of_speech_near_a_threat_word_can_still_be_overruled(text):
    from routing.strategies.rules import emergency_assess

    assert not emergency_assess(text, route_catalog_get()).symptom


def test_a_threat_to_the_writer_is_never_talked_down_by_the_classifier():
    decision = decide("CUSTOMER SAYS HE WILL HURT ME IF I DONT GIVE REFUND")
    assert (decision.route.slug, decision.source) == ("emergency", "rules")


def test_a_live_incident_is_not_hedged_by_a_word_about_the_past():
    assert not hedged("the pipe they repaired last week is leaking again right now")


@pytest.mark.parametrize(
    "text",
    [
        # Nervous laughter is not a joke about a person.
        "lol a guy just collapsed in bay 3 and hes not breathing",
        "sorry lol im panicking theres a fire in the kitchen",
        "help lol the ceiling is coming down",
        # Words that also say "not live" elsewhere in the text.
        "our maintenance guy is lying on the floor and wont answer me",
        "guy lying on the floor in the bathroom wont answer me, this is not a drill",
        "he drove from his house and now has chest pain in bay 4",
        "a guy who got stabbed downtown just walked in bleeding all over the floor",
        # A symptom after "or" is a second alarm, and is never overruled.
        "no pulse or barely breathing",
        "no reaction or wheezing hard",
        "not talking or slurring speech really bad",
        # Numbers only bridge a keyword, never a harmless phrase.
        "FIRE - two tables away from the kitchen, evacuating",
        "need cpr! two certified staff to the lobby",
        "our bartender is on fire tonight, his shirt caught the candle",
        "i hear screaming from bay 4 sim",
        "cctv shows collapsed customer at the door",
    ],
)
def test_real_emergencies_that_look_like_the_guards_still_reach_emergency(text):
    assert decide(text).route.is_emergency


# --------------------------------------------------------------------------- re-labels


def test_a_relabelled_text_the_keywords_forced_goes_where_the_admin_said_with_the_switch():
    from routing.services import route_utterance_add

    text = (
        "Fire alarm went off at noon from burnt toast, fire dept came and cleared it, all good"
        " now. Bays 2 and 3 lost 30 min - can we extend their bookings?"
    )
    assert decide(text).route.is_emergency

    route_utterance_add(route=Route.objects.get(slug="booking"), text=text)
    decision = decide(text)

    assert (decision.route.slug, decision.possible_emergency) == ("booking", True)
    # The emergency policy still pages for a keyword, whatever the label.
    assert decide(text, emergency_policy=EmergencyPolicy.EMERGENCY).route.is_emergency
    # Only that text (digits and case folded): another alarm still forces Emergency.
    assert decide(text.upper().replace("30", "45")).route.slug == "booking"
    assert decide("fire alarm going off and smoke in the hall").route.is_emergency


def test_a_relabelled_emergency_routes_to_emergency_even_with_a_keyword_set_aside():
    from routing.services import route_utterance_add

    text = "the alarm test was last week but today bay 4 guy went down and hasnt moved in 5 min"
    route_utterance_add(route=Route.objects.get(slug="emergency"), text=text)

    decision = decide(text)

    assert decision.route.is_emergency


# --------------------------------------------------------------------------- ninth pass


@pytest.mark.parametrize(
    ("text", "route"),
    [
        (
            "back door forced-open alert at 02:40, checked the cameras, it was the night cleaner,"
            " all fine. can you give her a new door code so she stops setting it off?",
            "booking",
        ),
        (
            "fire panel showed a fault overnight, the brigade came out, dusty detector, all reset"
            " and signed off. the bay 2 projector fan is blowing dust, can someone clean it?",
            "tech",
        ),
        (
            "smoke detector in the office chirps once a minute, it's the battery chirp, no smoke"
            " at all. what battery does it take?",
            "tech",
        ),
    ],
)
def test_an_alarm_report_the_message_explains_away_is_not_forced(text, route):
    assert emergency_match(text, route_catalog_get()) is None
    assert decide(text).route.slug == route


@pytest.mark.parametrize(
    "text",
    [
        "door forced-open alert on the office door and I can see someone inside on camera",
        "leak sensor in bay 2 says WET and water is coming under the storage door",
        "smoke alarm went off, I reset it but it keeps going off and I can smell burning",
        "motion alarm in the office at 3am, checked the cams, it was not the cleaner, someone"
        " is in there right now",
        "fire alarm going off, I don't think it's a false alarm",
        "CO alarm beeping even after the new battery and two of us have headaches",
    ],
)
def test_an_alarm_report_that_is_still_live_is_forced(text):
    assert emergency_match(text, route_catalog_get()) is not None
    assert decide(text).route.is_emergency


def test_a_piece_keeps_a_keyword_standing_only_when_the_keyword_is_its_own():
    # "got an intruder alert..." reads as an emergency alone, but its keyword is explained
    # away; the "trip" of the last sentence is about a code, and that sentence does not read
    # as one. Before, the first sentence kept the second one's keyword standing.
    text = (
        "got an intruder alert on the app at 3am but it was just the cleaner coming in early."
        " how do I add her hours so her code doesn't trip it again?"
    )
    assert not decide(text).route.is_emergency
    # A buried emergency still stands: its own clause holds its keyword.
    assert decide(
        "text the manager on call for me: fire in bay 3, we called 911"
    ).route.is_emergency


@pytest.mark.parametrize(
    ("text", "emergency"),
    [
        ("the chair in bay 8 has a broken leg, it's wobbly, we moved it aside", False),
        ("a guy fell off the bar stool and has a broken leg", True),
        ("she's got a broken arm from the ricochet", True),
        ("customer says she's trapped in the booking flow, pay bounces her to the start", False),
        ("kid trapped in the storage room, door jammed", True),
        ("customer trapped in the bay 3 screen enclosure, can't get out", True),
        ("bay 4 is on fire tonight, everyone's hitting bombs", False),
        ("guy hitting in bay 3 and the net is on fire", True),
        ("our bartender is on fire tonight, his shirt caught the candle", True),
        ("Is this caption ok? 'Our prices will give you a heart attack'", False),
        ("we passed out flyers at the expo all afternoon", False),
        ("TikTok says we're a death trap for your wallet, reply with something light", False),
        ("the mezzanine railing is a death trap, it's hanging off the wall", False),
    ],
)
def test_keywords_in_another_sense_and_in_their_own(text, emergency):
    assert (emergency_match(text, route_catalog_get()) is not None) is emergency


@pytest.mark.parametrize(
    "text",
    [
        "reply to that email later, right now a customer had a heart attack in bay 4",
        "post that we're closing early, a guest passed out by the bar and won't come round",
        "power cut here, a regular is on a portable oxygen concentrator and its battery is low",
    ],
)
def test_a_heart_attack_passing_out_and_oxygen_are_read_literally(text):
    decision = decide(text)
    assert decision.route.is_emergency or decision.possible_emergency


def test_oxygen_is_a_medical_keyword_no_classifier_talks_down():
    text = "Power cut ten minutes ago. A regular in the lounge is on oxygen and it's beeping low."
    assert decide(text).route.is_emergency


@pytest.mark.parametrize(
    "text",
    [
        "fi\u200bre in bay 3",
        "smo\u00adke in the hallway",
        "\ufeffsomeone is bleed\u200ding",
        "fire\u200bin\u200bbay\u200b3",
        "man\u200bdown\u200bbay\u200b2",
        "smoke\u2060coming\u2060out\u2060of\u2060the\u2060panel",
        "f\u0456re in bay 3",
        "sm\u043eke in the hall",
    ],
)
def test_invisible_characters_and_look_alike_letters_do_not_hide_a_keyword(text):
    assert emergency_match(text, route_catalog_get()) is not None


def test_invisible_characters_do_not_change_what_the_classifier_reads():
    from routing.classifier import normalise

    assert normalise("TrackMan fro\u00adzen in b\u0430y 3") == normalise("TrackMan frozen in bay 3")
    assert normalise("TrackMan\u200bfrozen") == normalise("TrackMan frozen")


def test_a_writer_who_says_nobody_is_in_danger_is_never_paged_by_the_classifier_alone():
    from routing.strategies.rules import reassured

    text = (
        "The motion-sensor lights in the toilet corridor keep switching off while people are"
        " still in there. Not dangerous, just annoying, can the timeout be extended?"
    )
    assert reassured(text)
    assert not reassured("not urgent maybe, but the floor is soaked and water is at the outlet")
    decision = decide(text)
    assert not decision.route.is_emergency
    assert decision.possible_emergency is True


def test_a_database_migrated_before_the_ninth_pass_gets_its_keywords_and_lines():
    migration = importlib.import_module("routing.migrations.0012_ninth_pass")
    emergency = Route.objects.get(slug="emergency")
    tech = Route.objects.get(slug="tech")
    casing = {k.casefold() for k in migration.CASING}
    oxygen = {k.casefold() for k in migration.OXYGEN}
    # As 0011 left a database: the loose keyword, no oxygen, none of the ninth pass's lines...
    gone = [" ".join(r["text"].split()) for r in _rows("learned/alarm_reports.jsonl")]
    emergency.keywords = "\n".join(
        [*(k for k in emergency.keyword_list if k.casefold() not in casing | oxygen), "casing the"]
    )
    emergency.utterances = "\n".join(u for u in emergency.utterance_list if u not in gone)
    emergency.save()
    tech.utterances = "\n".join(u for u in tech.utterance_list if u not in gone)
    # ...and an admin had re-labelled one of those emergencies to TechSupport.
    relabelled = next(
        " ".join(r["text"].split())
        for r in _rows("learned/alarm_reports.jsonl")
        if r["route"] == "emergency"
    )
    tech.utterances += "\n" + relabelled
    tech.save()
    assert emergency_match("No smell or smoke, case just feels warm", route_catalog_get())

    migration.ninth_pass(django_apps, None)
    once = {r.slug: (r.keywords, r.utterances) for r in Route.objects.all()}
    migration.ninth_pass(django_apps, None)

    assert {r.slug: (r.keywords, r.utterances) for r in Route.objects.all()} == once
    emergency.refresh_from_db()
    keywords = {k.casefold() for k in emergency.keyword_list}
    assert "casing the" not in keywords and casing | oxygen <= keywords
    assert relabelled not in emergency.utterance_list
    assert set(gone) - {relabelled} <= set(
        emergency.utterance_list
        + Route.objects.get(slug="tech").utterance_list
        + Route.objects.get(slug="booking").utterance_list
        + Route.objects.get(slug="brand").utterance_list
    )
    catalog = route_catalog_get()
    assert emergency_match("No smell or smoke, case just feels warm", catalog) is None
    assert emergency_match("two guys casing the car park with a torch at 3am", catalog)


# Real emergencies a hostile review of the ninth pass wrote against its own guards (alarm
# explanations, reassurance, hot streaks, furniture, software, invisible characters). Each
# reached Emergency before the pass; the first draft of it sent them elsewhere.
NINTH_PASS_REVIEW = [
    "tornado sirens going off, it was not a test, take cover",
    "the group in bay 8 is on fire, their drives set the net alight",
    "bay 12 is on fire, the booked party is trapped in the back of the bay",
    "Door controller glitched after the software update, kid trapped in the checkout area cage",
    "tech question: can the TrackMan be paused, there's a broken leg near the stool and we need the floor clear",
    "Booking for bay 3 needs to be moved, broken arm from the chair in bay 3, he's holding it and crying",
    "Leak sensor in bay 2 says wet, it was the pipe over the sim PC, water is running into the projector and the power bar",
    "server room temp alert, turned out the AC died and the rack is hot and popping",
    "the alarm system app sent an alert, it was the back door, there's a guy in a mask in the storage room",
    "It's not a safety issue for the guests but our bartender is lying on the floor behind the bar and his lips look purple",
    "Nobody in danger from the projector, but the old man in bay 3 is grey, sweating, and says his left arm feels heavy",
    "No danger to customers. A staff member is lying in the walk-in freezer and won't answer",
    "No one is in danger of getting hit, but the lady in bay 6 suddenly can't speak properly and half her face looks off",
    "the screen isn't dangerous, but the guy who stood under it is lying there and his eyes are open but he's not answering",
    "Not a hazard anymore, but the guest who touched it is lying on the floor twitching",
    "Nothing dangerous in the bay, but a guy out in the parking lot is lying face down next to his car",
    "no safety issue with the sim, but our manager just went pale, dropped to the floor and isn't answering",
    "not dangerous he says, but the man's speech is garbled and he can't lift his right arm",
    "Nobody is in danger he says, while he's waving a machete around in the lot",
    "Not dangerous? a man is standing in the lot pointing a rifle at the building",
    "Not a safety thing probably, but a customer has been locked in the bathroom for an hour and isn't answering the door",
    "I was told it's not unsafe, but a woman's been sitting in her car in our lot with the engine running in the closed garage for an hour and isn't moving",
    "no one's in danger, he's just sleeping it off on the floor, but he's snoring weird and we can't wake him",
    "It's not dangerous, just annoying, but I think the kid ate one of the vape pods from the lost and found and is drowsy",
    "Not a hazard, the water's only an inch deep but it's reached the power strip under bay 2 and it's crackling",
    "The tornado sirens are sounding, it was on the radio too, get away from the windows",
    "co alarm is reading high, turned out the exhaust is backing into bay 1, kid is sleepy and won't wake properly",
    "bay 5 is on fire, the party booked for 8 is still inside",
    "broken leg from a stool fall in bay 3, TrackMan still running, please pause the session",
    "send police, it was the customer in bay 2, he has the manager pinned against the wall",
    "fire alarm going off, it was the bay 3 projector, the ceiling tiles above it are glowing",
    "detector going off whenever the kitchen oven runs, now the oven door is glowing and won't close",
    "fire\u200bin\u200bbay\u200b3",
    "there\u2060is\u2060a\u2060fire\u2060in\u2060the\u2060kitchen",
    "someone\u200bcollapsed\u200bin\u200bbay\u200b4",
    "man\u200bdown\u200bbay\u200b2",
    "blood\u200beverywhere",
    "smoke\u2060coming\u2060out\u2060of\u2060the\u2060panel",
]
# ...and three whose emergency is in a sentence with no keyword after a long request: one
# tap away.
NINTH_PASS_REVIEW_FLAGGED = [
    "Please refund the Hendersons for bay 2 tonight and rebook them for Friday at 7 with the league rate, send the receipt to their email, sorry about the accident. The man is not moving and his eyes are closed.",
    "Bay 3 projector needs a new lamp, bay 5 TrackMan needs calibration, bay 7 screen has a tear, bay 2 had a leak. A woman there is face down on the wet floor and not reacting.",
    "need police at bay 4, it was the same guy from the booking dispute, he threw his driver at my head",
]


@pytest.mark.parametrize("text", NINTH_PASS_REVIEW)
def test_real_emergencies_from_the_ninth_pass_review_reach_emergency(text):
    assert decide(text).route.is_emergency


@pytest.mark.parametrize("text", NINTH_PASS_REVIEW_FLAGGED)
def test_buried_emergencies_from_the_ninth_pass_review_are_one_tap_away(text):
    decision = decide(text)
    assert decision.route.is_emergency or decision.possible_emergency


@pytest.mark.parametrize(
    "text",
    [
        "motion alarm went off overnight, turned out it was a balloon from the party drifting",
        "the fire alarm went off at 3am, it was the cleaner's steam mop, all fine now",
        "a bird is trapped in the rafters above bay 5, it keeps flying into the screen",
        "air bubble trapped under the impact screen, it's warping the image",
        "customer feels trapped in his annual membership contract, wants to cancel",
        "I'll have a heart attack if the TrackMan crashes again during league",
        "the oxygen tank prop for the scuba themed party needs to be returned",
        "passed out the wristbands to the birthday group",
    ],
)
def test_harmless_messages_from_the_ninth_pass_review_are_not_forced(text):
    assert emergency_match(text, route_catalog_get()) is None
