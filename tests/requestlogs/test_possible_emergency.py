"""A request routing doubted is not an emergency: the API says so, and the row keeps it."""

import pytest

from requestlogs.models import RequestLog
from tests.requestlogs.test_api_stream import SSE, parse_sse, streamed
from tests.routing.test_safety import DOUBTED

pytestmark = pytest.mark.django_db

URL = "/api/v1/requests/"


def test_the_submit_answer_flags_a_possible_emergency_and_the_row_keeps_it(api_client, routes):
    body = api_client.post(URL, {"text": DOUBTED}, format="json").json()

    assert body["route"]["slug"] != "emergency"
    assert body["routing"]["possible_emergency"] is True
    assert body["routing"]["confidence"] < 0.7
    assert RequestLog.objects.get(pk=body["id"]).possible_emergency is True
    assert api_client.get(f"{URL}{body['id']}/").json()["routing"]["possible_emergency"] is True


def test_a_clear_request_and_a_chosen_emergency_are_not_flagged(api_client, routes):
    clear = api_client.post(URL, {"text": "TrackMan frozen in bay 3"}, format="json").json()
    chosen = api_client.post(URL, {"text": DOUBTED, "route": "emergency"}, format="json").json()

    assert clear["routing"]["possible_emergency"] is False
    assert (chosen["route"]["slug"], chosen["routing"]["source"]) == ("emergency", "manual")
    assert chosen["routing"]["possible_emergency"] is False


def test_the_stream_says_so_in_its_route_and_done_frames(api_client, routes):
    response = api_client.post(URL, {"text": DOUBTED}, format="json", headers=SSE)

    events = dict(parse_sse(streamed(response)))
    assert events["route"]["routing"]["possible_emergency"] is True
    assert events["done"]["routing"]["possible_emergency"] is True


def test_the_openapi_schema_documents_the_flag(api_client):
    schema = api_client.get("/api/v1/schema/", {"format": "json"}).json()
    routing = schema["components"]["schemas"]["RoutingInfo"]
    assert routing["properties"]["possible_emergency"]["type"] == "boolean"
    assert "one-tap" in routing["properties"]["possible_emergency"]["description"]
