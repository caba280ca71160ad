"""The local classifier and the hybrid strategy that puts it in front of the LLM."""

import asyncio
import dataclasses
import io
import json
import time
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command

from config.selectors import system_config_get
from config.services import system_config_update
from routing import router
from routing.classifier import FastClassifier, TextClassifier, local_router_model
from routing.models import Route
from routing.router import route_decide
from routing.selectors import route_catalog_get, route_training_examples
from routing.services import route_update, route_utterance_add
from routing.strategies import base
from routing.strategies.hybrid import HybridStrategy
from tests.routing.factories import RouteFactory

pytestmark = pytest.mark.django_db

DATA = Path(__file__).resolve().parents[2] / "routing" / "data"


def decide(text: str, strategy: str = "hybrid"):
    config = dataclasses.replace(system_config_get(), routing_strategy=strategy)
    return async_to_sync(route_decide)(
        text=text, requested="auto", catalog=route_catalog_get(), config=config
    )


def eval_texts() -> list[str]:
    lines = (DATA / "eval.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def test_fast_prediction_equals_sklearn_prediction():
    trained = TextClassifier.train(route_training_examples())
    fast = FastClassifier(trained.pipeline, trained.labels)
    for text in eval_texts()[:80]:
        slow_p = trained.predict_proba(text)
        fast_p = fast.predict_proba(text)
        assert slow_p.keys() == fast_p.keys()
        for label, p in slow_p.items():
            assert fast_p[label] == pytest.approx(p, abs=1e-9)


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("TrackMan frozen in bay 3", "tech"),
        ("projector in bay 6 is just showing a blue screen", "tech"),
        ("guest can't get in, the door code from the email isn't working", "booking"),
        ("can you move my 7pm booking to 9pm tomorrow", "booking"),
        ("write an instagram post for our winter league", "brand"),
        ("how much is a gift card", "brand"),
    ],
)
def test_local_routes_clear_requests(text, slug):
    decision = decide(text, strategy="local")
    assert decision.route.slug == slug
    assert decision.source == "local"
    assert 0.0 <= decision.confidence <= 1.0


@pytest.mark.parametrize(
    "text",
    [
        "the power bar in bay 2 sparked",
        "guy has chest pains",
        "someone is bleeding",
        "basement flooded",
    ],
)
def test_hybrid_sends_safety_words_to_emergency_by_rules(text):
    decision = decide(text)
    assert decision.route.slug == "emergency"
    assert decision.source == "rules"
    assert decision.confidence == 1.0


def test_hybrid_confident_local_makes_no_upstream_call(openai_upstream):
    decision = decide("TrackMan frozen in bay 3")
    assert decision.source == "local"
    assert decision.upstream_calls == 0
    assert openai_upstream.calls == []


def test_hybrid_asks_the_llm_only_when_local_is_unsure(openai_upstream):
    system_config_update(confidence_threshold=0.999)
    openai_upstream.configure(route_answer="brand", route_confidence=0.8)
    decision = decide("hmm, not sure who handles this one")
    assert decision.source == "llm"
    assert decision.route.slug == "brand"
    assert len(openai_upstream.calls) == 1


@pytest.mark.parametrize("strategy", ["hybrid", "llm"])
def test_the_question_to_the_llm_waits_in_a_thread_not_on_the_loop(
    openai_upstream, strategy, monkeypatch
):
    system_config_update(confidence_threshold=0.999)
    openai_upstream.configure(route_answer="brand", route_confidence=0.8, latency_s=0.3)
    threads: list[str] = []
    in_thread = base.in_thread

    async def recorded(fn, /, *args, **kwargs):
        threads.append(fn.__qualname__)
        return await in_thread(fn, *args, **kwargs)

    monkeypatch.setattr(base, "in_thread", recorded)
    ticks: list[float] = []
    config = dataclasses.replace(system_config_get(), routing_strategy=strategy)
    catalog = route_catalog_get()

    async def decide_while_the_loop_ticks():
        async def tick() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        ticking = asyncio.ensure_future(tick())
        try:
            return await route_decide(
                text="hmm, not sure who handles this one",
                requested="auto",
                catalog=catalog,
                config=config,
            )
        finally:
            ticking.cancel()

    decision = async_to_sync(decide_while_the_loop_ticks)()

    assert decision.source == "llm", decision.note
    assert len(openai_upstream.calls) == 1
    assert threads == ["LLMStrategy.decide"]
    assert len(ticks) >= 10  # the loop served others while the LLM took 0.3 s


def test_a_confident_local_decision_is_made_on_the_loop(openai_upstream, monkeypatch):
    threads: list[str] = []
    monkeypatch.setattr(base, "in_thread", lambda fn, *a, **k: threads.append(fn))
    decision = decide("TrackMan frozen in bay 3")
    assert decision.source == "local" and threads == [] and openai_upstream.calls == []


def test_a_long_paste_is_decided_in_a_thread_with_the_same_answer(monkeypatch):
    text = "the bay 2 screen flickers. can you book me in at six tomorrow. " * 60
    assert len(text) > router.ROUTE_ON_LOOP_MAX_CHARS
    on_the_loop = HybridStrategy().decide(
        text, catalog=route_catalog_get(), config=system_config_get()
    )
    threads: list[str] = []
    in_thread = router.in_thread

    async def recorded(fn, /, *args, **kwargs):
        threads.append(fn.__qualname__)
        return await in_thread(fn, *args, **kwargs)

    monkeypatch.setattr(router, "in_thread", recorded)
    decision = decide(text)

    assert threads == ["HybridStrategy.decide"]
    assert on_the_loop is not None
    assert (decision.route.slug, decision.source, decision.possible_emergency) == (
        on_the_loop.route.slug,
        on_the_loop.source,
        on_the_loop.possible_emergency,
    )


def test_a_route_with_a_single_example_does_not_stop_auto_routing():
    RouteFactory(utterances="Can we book three bays for a birthday party on Saturday?")

    decision = decide("guy collapsed in bay 3 not breathing")

    assert (decision.route.slug, decision.source) == ("emergency", "rules")
    assert decide("TrackMan frozen in bay 3").route.slug == "tech"


def test_the_same_lines_in_another_order_train_the_same_model():
    # A database migrated step by step stores the lines in another order than a fresh one.
    examples = route_training_examples()
    shuffled = list(reversed(examples))
    one, other = TextClassifier.train(examples), TextClassifier.train(shuffled)
    for text in ("smoke coming from bay 6 pc", "refund the 7pm booking", "is the wifi down"):
        assert one.predict_proba(text) == other.predict_proba(text)


def test_hybrid_keeps_the_local_guess_when_the_llm_fails(openai_upstream):
    # At 1.0 every guess of the classifier is unsure (only an example's own text is sure).
    system_config_update(confidence_threshold=1.0)
    openai_upstream.configure(fail="500")
    decision = decide("TrackMan keeps freezing in bay 3")
    assert decision.source == "local"
    assert decision.route.slug == "tech"
    assert decision.upstream_calls == 1


def test_hybrid_without_llm_routing_uses_the_local_guess(openai_upstream):
    system_config_update(confidence_threshold=1.0, llm_routing_enabled=False)
    decision = decide("TrackMan frozen in bay 3")
    assert decision.source == "local"
    assert openai_upstream.calls == []


def test_an_added_utterance_retrains_the_model_on_the_next_request():
    text = "the zorblaxian flux capacitor wants a refund voucher"
    before = decide(text, strategy="local")
    model_before = local_router_model.get(route_catalog_get().fingerprint)
    booking = Route.objects.get(slug="booking")
    for variant in (text, "zorblaxian flux capacitor", "flux capacitor zorblaxian again"):
        route_utterance_add(route=booking, text=variant)
    after = decide(text, strategy="local")
    assert local_router_model.get(route_catalog_get().fingerprint) is not model_before
    assert after.route.slug == "booking"
    assert after.confidence > (before.confidence if before.route.slug == "booking" else 0.0)


def test_with_one_route_left_to_learn_from_routing_still_works_and_trains_once(monkeypatch):
    # An admin disabled every route but one: there is nothing to tell apart. The classifier
    # has no model for that catalog, and must not retrain (on the loop) on every request.
    for route in Route.objects.exclude(slug="tech"):
        route_update(route=route, enabled=False)
    trainings: list[str] = []
    retrain = local_router_model._retrain

    def counted(fingerprint: str) -> None:
        trainings.append(fingerprint)
        retrain(fingerprint)

    monkeypatch.setattr(local_router_model, "_retrain", counted)
    first, second = decide("TrackMan frozen in bay 3"), decide("projector shows no image")
    assert first.route.slug == second.route.slug == "tech"
    assert len(trainings) == 1


def test_evaluate_router_meets_the_targets_on_the_evaluation_set():
    out = io.StringIO()
    call_command(
        "evaluate_router", str(DATA / "eval.jsonl"), "--strategy", "hybrid", "--json", stdout=out
    )
    report = json.loads(out.getvalue().strip().splitlines()[-1])
    assert report["n"] >= 200
    assert report["accuracy"] >= 0.95
    assert report["per_route"]["emergency"]["recall"] == 1.0
    assert report["unsure_share"] <= 0.15
    assert {"p50_ms", "p95_ms"} <= report.keys()
    text = out.getvalue()
    assert "confusion" in text and "precision" in text


def test_evaluate_router_rejects_a_bad_file(tmp_path):
    from django.core.management.base import CommandError

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi"}\n')
    with pytest.raises(CommandError):
        call_command("evaluate_router", str(bad))
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"text": "hi", "route": "nowhere"}\n')
    with pytest.raises(CommandError):
        call_command("evaluate_router", str(unknown))


@pytest.mark.parametrize("text", ["hi there", "bye", "tech issue in bay 7", "bay 4 dead"])
def test_hybrid_does_not_page_an_emergency_without_a_safety_word(text):
    decision = decide(text)
    assert decision.route.slug != "emergency"


def test_a_training_text_gets_its_own_label_unless_two_routes_claim_it():
    examples = [*route_training_examples(), ("bay 3 is weird", "tech"), ("bay 3 is weird", "brand")]
    trained = TextClassifier.train(examples)
    fast = FastClassifier(trained.pipeline, trained.labels, trained.known)
    text, label = examples[0]

    for model in (trained, fast):
        assert model.knows(text.upper())
        assert model.predict_proba(text)[label] == 1.0
        assert not model.knows("bay 7 is weird")  # digits fold, but two routes claim it
