"""The request API as a client sees it: create, list, read, feedback, escalate."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from config.services import system_config_update
from requestlogs.models import Channel, RequestLog, RequestStatus
from tests.requestlogs.api_factories import REQUEST_KEYS, SUBMIT_KEYS, token_client
from tests.requestlogs.factories import PASSWORD, RequestLogFactory, UserFactory
from tests.routing.factories import RouteFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/requests/"
ROUTING_SOURCES = {"manual", "rules", "local", "llm", "default"}


def detail_url(log_id) -> str:
    return f"{URL}{log_id}/"


class TestCreate:
    def test_auto_route_answers_with_the_contract_shape(self, api_client, user, routes):
        response = api_client.post(
            URL, {"text": "TrackMan frozen in bay 3", "location": "Bedford"}, format="json"
        )

        assert response.status_code == 201
        body = response.json()
        assert set(body) == SUBMIT_KEYS
        assert body["suggested_route"] is None  # Auto: the classifier had its say already
        assert body["status"] == "ok"
        assert body["route"]["slug"] in routes
        assert body["route"]["name"] == routes[body["route"]["slug"]].name
        assert body["routing"]["source"] in ROUTING_SOURCES
        assert 0.0 <= body["routing"]["confidence"] <= 1.0
        assert body["answer"].strip()
        assert body["cached"] is False
        assert body["escalated"] is False
        assert set(body["timings_ms"]) == {"routing", "ttft", "assistant", "total"}
        assert body["timings_ms"]["total"] >= body["timings_ms"]["routing"]
        assert body["created_at"].endswith("Z")

        row = RequestLog.objects.get(pk=body["id"])
        assert row.user == user
        assert row.channel == Channel.API
        assert row.location == "Bedford"
        assert row.requested_route == "auto"
        assert row.answer == body["answer"]

    def test_a_chosen_route_is_used_as_is(self, api_client, routes):
        response = api_client.post(
            URL, {"text": "the screen is weird", "route": "booking"}, format="json"
        )

        assert response.status_code == 201
        body = response.json()
        assert body["route"] == {"slug": "booking", "name": routes["booking"].name}
        assert body["routing"] == {
            "source": "manual",
            "confidence": 1.0,
            "possible_emergency": False,
        }

    def test_the_same_request_again_comes_from_the_response_cache(self, api_client, routes):
        system_config_update(response_cache_enabled=True)

        first = api_client.post(
            URL, {"text": "Projector flickering", "route": "tech"}, format="json"
        )
        second = api_client.post(
            URL, {"text": "Projector flickering", "route": "tech"}, format="json"
        )

        assert first.json()["cached"] is False
        assert second.status_code == 201
        assert second.json()["cached"] is True
        assert second.json()["status"] == "cached"
        assert second.json()["answer"] == first.json()["answer"]

    def test_text_of_exactly_4000_characters_is_accepted(self, api_client, routes):
        response = api_client.post(URL, {"text": "x" * 4000, "route": "tech"}, format="json")
        assert response.status_code == 201

    def test_a_model_failure_is_a_created_request_with_a_clear_answer(
        self, api_client, routes, openai_upstream
    ):
        system_config_update(assistant_timeout_s=1.0)
        openai_upstream.configure(fail="hang")  # the model never answers

        response = api_client.post(URL, {"text": "TrackMan frozen", "route": "tech"}, format="json")

        assert response.status_code == 201
        body = response.json()
        assert body["status"] == "timeout"
        assert "did not answer in time" in body["answer"]
        assert RequestLog.objects.get(pk=body["id"]).status == RequestStatus.TIMEOUT
        assert len(openai_upstream.calls) == 1  # the deadline left no time for a retry

    def test_the_console_header_marks_a_session_request_as_web(self, user, routes):
        client = APIClient()
        client.force_login(user)

        response = client.post(
            URL,
            {"text": "Customer locked out", "route": "booking"},
            format="json",
            headers={"X-ClubOS-Channel": "web"},
        )

        assert response.status_code == 201
        assert RequestLog.objects.get(pk=response.json()["id"]).channel == Channel.WEB

    def test_a_token_client_stays_the_api_channel_whatever_it_claims(self, api_client, routes):
        response = api_client.post(
            URL,
            {"text": "Customer locked out", "route": "booking"},
            format="json",
            headers={"X-ClubOS-Channel": "web"},
        )

        assert RequestLog.objects.get(pk=response.json()["id"]).channel == Channel.API

    def test_unauthenticated_is_401_and_writes_nothing(self, routes):
        response = APIClient().post(URL, {"text": "TrackMan frozen"}, format="json")

        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Token")
        assert not RequestLog.objects.exists()


class TestCreateValidation:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            pytest.param({}, "text", id="missing-text"),
            pytest.param({"text": ""}, "text", id="empty-text"),
            pytest.param({"text": "   \n "}, "text", id="blank-text"),
            pytest.param({"text": "x" * 4001}, "text", id="4001-chars"),
            pytest.param({"text": None}, "text", id="null-text"),
            pytest.param({"text": 42}, "text", id="number-text"),
            pytest.param({"text": ["TrackMan"]}, "text", id="list-text"),
            pytest.param({"text": "TrackMan frozen", "route": "golf"}, "route", id="unknown-route"),
            pytest.param({"text": "TrackMan frozen", "route": 3}, "route", id="number-route"),
            pytest.param({"text": "TrackMan frozen", "location": {}}, "location", id="dict-loc"),
            pytest.param({"text": "TrackMan", "location": "x" * 101}, "location", id="long-loc"),
        ],
    )
    def test_bad_input_is_a_400_with_a_message_and_no_row(self, api_client, routes, body, field):
        response = api_client.post(URL, body, format="json")

        assert response.status_code == 400
        messages = response.json()[field]
        assert messages
        assert all(isinstance(m, str) and m for m in messages)
        assert not RequestLog.objects.exists()

    def test_a_disabled_route_cannot_be_chosen(self, api_client, routes):
        RouteFactory(slug="events", enabled=False)

        response = api_client.post(URL, {"text": "party", "route": "events"}, format="json")

        assert response.status_code == 400
        assert "events" in response.json()["route"][0]
        assert not RequestLog.objects.exists()

    def test_the_route_message_lists_the_choices(self, api_client, routes):
        response = api_client.post(URL, {"text": "hi", "route": "golf"}, format="json")

        message = response.json()["route"][0]
        assert "auto" in message
        assert "tech" in message

    @pytest.mark.parametrize(
        "raw",
        ['{"text": "TrackMan frozen"', "not json", '["TrackMan frozen"]', "42", "null"],
    )
    def test_malformed_json_is_a_400_not_a_500(self, api_client, routes, raw):
        response = api_client.post(URL, raw, content_type="application/json")

        assert response.status_code == 400
        assert response.json()
        assert not RequestLog.objects.exists()


class TestList:
    def test_a_user_sees_only_their_own_requests_newest_first(self, api_client, user):
        now = timezone.now()
        older = RequestLogFactory(user=user, created_at=now - timedelta(hours=2))
        newer = RequestLogFactory(user=user, created_at=now - timedelta(hours=1))
        RequestLogFactory()  # someone else's

        response = api_client.get(URL)

        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 2
        assert [r["id"] for r in body["results"]] == [str(newer.pk), str(older.pk)]
        assert set(body["results"][0]) == REQUEST_KEYS

    def test_staff_see_everyone_s_requests(self):
        RequestLogFactory.create_batch(3)
        staff = UserFactory(is_staff=True)

        assert token_client(staff).get(URL).json()["count"] == 3

    def test_filters_by_route_and_status(self, api_client, user):
        tech = RouteFactory(slug="tech-x")
        wanted = RequestLogFactory(user=user, route=tech, status=RequestStatus.TIMEOUT)
        RequestLogFactory(user=user, route=tech, status=RequestStatus.OK)
        RequestLogFactory(user=user, status=RequestStatus.TIMEOUT)

        response = api_client.get(URL, {"route": "tech-x", "status": "timeout"})

        assert [r["id"] for r in response.json()["results"]] == [str(wanted.pk)]

    def test_filters_by_since_and_until_dates_and_datetimes(self, api_client, user):
        day = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
        before = RequestLogFactory(user=user, created_at=day - timedelta(days=2))
        during = RequestLogFactory(user=user, created_at=day - timedelta(days=1))
        after = RequestLogFactory(user=user, created_at=day)

        yesterday = (day - timedelta(days=1)).date().isoformat()
        by_date = api_client.get(URL, {"since": yesterday, "until": yesterday}).json()
        assert [r["id"] for r in by_date["results"]] == [str(during.pk)]

        since = (day - timedelta(days=1, hours=1)).isoformat()
        by_datetime = api_client.get(URL, {"since": since}).json()
        assert {r["id"] for r in by_datetime["results"]} == {str(during.pk), str(after.pk)}
        assert str(before.pk) not in {r["id"] for r in by_datetime["results"]}

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"since": "yesterday"}, "since"),
            ({"until": "2026-13-01"}, "until"),
            ({"status": "lost"}, "status"),
            ({"since": "2026-02-02", "until": "2026-02-01"}, "until"),
        ],
    )
    def test_invalid_filters_are_a_400_with_a_message(self, api_client, params, field):
        response = api_client.get(URL, params)

        assert response.status_code == 400
        assert response.json()[field]

    def test_pages_hold_50_requests(self, api_client, user):
        RequestLogFactory.create_batch(51, user=user)

        first = api_client.get(URL).json()
        second = api_client.get(first["next"]).json()

        assert first["count"] == 51
        assert len(first["results"]) == 50
        assert len(second["results"]) == 1


class TestDetail:
    def test_own_request(self, api_client, user):
        log = RequestLogFactory(user=user)

        response = api_client.get(detail_url(log.pk))

        assert response.status_code == 200
        body = response.json()
        assert body["id"] == str(log.pk)
        assert body["route"] == {"slug": log.route.slug, "name": log.route.name}
        assert body["timings_ms"]["total"] == 1842.5

    def test_someone_else_s_request_is_404(self, api_client):
        assert api_client.get(detail_url(RequestLogFactory().pk)).status_code == 404

    def test_staff_can_read_anyone_s_request(self):
        log = RequestLogFactory()
        staff = UserFactory(is_staff=True)

        assert token_client(staff).get(detail_url(log.pk)).status_code == 200

    @pytest.mark.parametrize(
        "bad_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-000000000000"]
    )
    def test_a_malformed_or_unknown_id_is_a_json_404(self, api_client, bad_id):
        response = api_client.get(detail_url(bad_id))

        assert response.status_code == 404
        assert response.json()["detail"]


class TestFeedback:
    def test_feedback_is_stored_and_returned(self, api_client, user):
        log = RequestLogFactory(user=user)

        response = api_client.post(
            f"{detail_url(log.pk)}feedback/",
            {"helpful": False, "comment": "  the door code step was wrong "},
            format="json",
        )

        assert response.status_code == 200
        body = response.json()
        assert body["feedback"] == {"helpful": False, "comment": "the door code step was wrong"}
        assert set(body) >= REQUEST_KEYS
        log.refresh_from_db()
        assert log.feedback_helpful is False
        assert log.feedback_comment == "the door code step was wrong"
        assert log.feedback_at is not None

    def test_comment_is_optional(self, api_client, user):
        log = RequestLogFactory(user=user)

        response = api_client.post(
            f"{detail_url(log.pk)}feedback/", {"helpful": True}, format="json"
        )

        assert response.json()["feedback"] == {"helpful": True, "comment": ""}

    @pytest.mark.parametrize("body", [{}, {"helpful": None}, {"helpful": "perhaps"}])
    def test_helpful_must_be_a_boolean(self, api_client, user, body):
        log = RequestLogFactory(user=user)

        response = api_client.post(f"{detail_url(log.pk)}feedback/", body, format="json")

        assert response.status_code == 400
        assert response.json()["helpful"]
        log.refresh_from_db()
        assert log.feedback_at is None

    def test_a_too_long_comment_is_a_400(self, api_client, user):
        log = RequestLogFactory(user=user)

        response = api_client.post(
            f"{detail_url(log.pk)}feedback/",
            {"helpful": True, "comment": "x" * 2001},
            format="json",
        )

        assert response.status_code == 400
        assert response.json()["comment"]

    def test_no_feedback_on_someone_else_s_request(self, api_client):
        log = RequestLogFactory()

        response = api_client.post(
            f"{detail_url(log.pk)}feedback/", {"helpful": True}, format="json"
        )

        assert response.status_code == 404
        log.refresh_from_db()
        assert log.feedback_helpful is None


class TestEscalate:
    def test_escalating_marks_the_request_once(self, api_client, user):
        log = RequestLogFactory(user=user)
        url = f"{detail_url(log.pk)}escalate/"

        first = api_client.post(url, {"note": "customer is upset"}, format="json")
        log.refresh_from_db()
        escalated_at = log.escalated_at
        second = api_client.post(url, format="json")

        assert first.status_code == 200
        assert first.json()["status"] == "escalated"
        assert first.json()["escalated"] is True
        assert second.status_code == 200
        assert second.json() == first.json()
        log.refresh_from_db()
        assert log.escalated is True
        assert log.escalated_at == escalated_at

    def test_no_escalating_someone_else_s_request(self, api_client):
        log = RequestLogFactory()

        assert api_client.post(f"{detail_url(log.pk)}escalate/").status_code == 404
        log.refresh_from_db()
        assert log.escalated is False


class TestMarkAbandonedCommand:
    def test_marks_only_old_received_rows_and_says_how_many(self):
        old = RequestLogFactory(
            status=RequestStatus.RECEIVED, created_at=timezone.now() - timedelta(minutes=30)
        )
        young = RequestLogFactory(
            status=RequestStatus.RECEIVED, created_at=timezone.now() - timedelta(minutes=1)
        )
        out = StringIO()

        call_command("mark_abandoned", "--minutes", "10", stdout=out)

        assert "Marked 1 request" in out.getvalue()
        old.refresh_from_db()
        young.refresh_from_db()
        assert old.status == RequestStatus.ABANDONED
        assert young.status == RequestStatus.RECEIVED


def test_token_login_then_submit(routes):
    """The whole flow a script follows: credentials -> token -> request."""
    user = UserFactory(username="kiosk-bedford")
    anonymous = APIClient()

    token = anonymous.post(
        "/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    ).json()["token"]
    anonymous.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = anonymous.post(
        URL, {"text": "Customer locked out", "route": "booking"}, format="json"
    )

    assert response.status_code == 201
    assert RequestLog.objects.get(pk=response.json()["id"]).user == user
