"""A route chosen by hand that the classifier strongly disagrees with gets a hint,
``suggested_route``, in the submit's answer: never a different route, never another call."""

import pytest

from config.selectors import system_config_get
from requestlogs.models import RequestLog, RoutingSource
from routing.classifier import local_router_model
from routing.router import strategy_get
from routing.selectors import route_catalog_get
from routing.services import route_utterance_add
from routing.suggestion import SUGGEST_MIN_CONFIDENCE
from tests.requestlogs.test_api_stream import SSE, parse_sse, streamed

URL = "/api/v1/requests/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def trained(routes):
    """The classifier as a serving process has it: trained at start-up."""
    strategy_get("local").warm(route_catalog_get())


def test_a_strong_disagreement_is_a_hint_and_the_chosen_route_stays(
    api_client, routes, trained, openai_upstream
):
    response = api_client.post(
        URL, {"text": "TrackMan frozen in bay 3", "route": "booking"}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["suggested_route"] == "tech"
    assert body["route"]["slug"] == "booking"
    assert body["routing"] == {"source": "manual", "confidence": 1.0, "possible_emergency": False}
    log = RequestLog.objects.get(pk=body["id"])
    assert log.route.slug == "booking" and log.routing_source == RoutingSource.MANUAL
    # The chosen route's one model call, and no other.
    assert len(openai_upstream.calls) == 1
    assert log.upstream_calls == 1


def test_no_hint_when_the_classifier_agrees_or_the_route_was_auto(api_client, routes, trained):
    agreed = api_client.post(
        URL, {"text": "TrackMan frozen in bay 3", "route": "tech"}, format="json"
    )
    auto = api_client.post(
        URL, {"text": "TrackMan frozen in bay 3", "route": "auto"}, format="json"
    )

    assert agreed.json()["suggested_route"] is None
    assert auto.json()["suggested_route"] is None


def test_no_hint_when_the_classifier_is_unsure(api_client, routes, trained):
    text = "blorp zing wibble"
    probabilities = strategy_get("local").route_probabilities(text, route_catalog_get())
    assert max(probabilities.values()) < SUGGEST_MIN_CONFIDENCE
    chosen = min(probabilities, key=probabilities.__getitem__)

    body = api_client.post(URL, {"text": text, "route": chosen}, format="json").json()

    assert body["suggested_route"] is None


def test_the_route_and_done_events_carry_the_hint(api_client, routes, trained):
    response = api_client.post(
        URL,
        {"text": "Customer locked out, door code not working", "route": "tech"},
        format="json",
        headers=SSE,
    )

    events = dict(parse_sse(streamed(response)))
    assert events["route"]["suggested_route"] == "booking"
    assert events["done"]["suggested_route"] == "booking"
    assert events["done"]["route"]["slug"] == "tech"


def test_a_hand_chosen_route_never_trains_the_classifier(api_client, routes, trained):
    """After an admin's edit of the examples the model must be trained again: a chosen
    route's request gives no hint rather than seconds of training."""
    route_utterance_add(route=routes["tech"], text="the launch monitor shows a red light")
    catalog = route_catalog_get()
    assert not local_router_model.ready(catalog.fingerprint)

    body = api_client.post(
        URL, {"text": "TrackMan frozen in bay 3", "route": "booking"}, format="json"
    ).json()

    assert body["suggested_route"] is None
    assert not local_router_model.ready(catalog.fingerprint)
    # The next Auto request trains it, as before; from then on hints are back.
    strategy_get("hybrid").decide("TrackMan frozen", catalog=catalog, config=system_config_get())
    again = api_client.post(
        URL, {"text": "TrackMan frozen in bay 3", "route": "booking"}, format="json"
    )
    assert again.json()["suggested_route"] == "tech"


def test_the_schema_documents_the_hint_on_a_submits_answer():
    from rest_framework.test import APIClient

    schema = APIClient().get("/api/v1/schema/", {"format": "json"}).json()
    created = schema["paths"]["/api/v1/requests/"]["post"]["responses"]["201"]["content"]
    ref = created["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    field = schema["components"]["schemas"][ref]["properties"]["suggested_route"]
    assert field["nullable"] is True
    assert "chose the route" in field["description"]
    detail = schema["paths"]["/api/v1/requests/{request_id}/"]["get"]["responses"]["200"]
    detail_ref = detail["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "suggested_route" not in schema["components"]["schemas"][detail_ref]["properties"]
