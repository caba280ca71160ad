"""Project-wide API: token login, authentication errors, health, the OpenAPI schema and docs."""

import socket
import time

import pytest
import yaml
from django.core.management import call_command
from django.db import connection
from django.db.utils import OperationalError
from rest_framework.test import APIClient

from accounts.services import api_token_create, api_token_revoke
from tests.requestlogs.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
HEALTH_URL = "/api/v1/health/"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestToken:
    def test_credentials_give_a_token_that_authenticates(self):
        user = UserFactory()
        client = APIClient()

        response = client.post(
            TOKEN_URL, {"username": user.username, "password": PASSWORD}, format="json"
        )

        assert response.status_code == 200
        token = response.json()["token"]
        assert set(response.json()) == {"token", "expiry"}
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        assert client.get("/api/v1/requests/").status_code == 200
        # Asking again gives a new key (only digests are stored); both work: scripts can
        # log in on every start.
        again = APIClient().post(
            TOKEN_URL, {"username": user.username, "password": PASSWORD}, format="json"
        )
        assert again.json()["token"] != token
        assert client.get("/api/v1/requests/").status_code == 200

    @pytest.mark.parametrize(
        "body",
        [
            {"username": "nobody", "password": "wrong"},
            {"username": "staff-x", "password": "wrong"},
            {"username": "staff-x"},
            {},
        ],
    )
    def test_bad_credentials_are_a_400_with_a_message(self, body):
        UserFactory(username="staff-x")

        response = APIClient().post(TOKEN_URL, body, format="json")

        assert response.status_code == 400
        messages = [m for value in response.json().values() for m in value]
        assert messages
        assert all(isinstance(m, str) and m for m in messages)
        assert "token" not in response.json()

    def test_an_inactive_user_gets_no_token(self):
        user = UserFactory(is_active=False)

        response = APIClient().post(
            TOKEN_URL, {"username": user.username, "password": PASSWORD}, format="json"
        )

        assert response.status_code == 400


class TestAuthentication:
    @pytest.mark.parametrize("url", ["/api/v1/requests/", "/api/v1/routes/"])
    def test_no_credentials_is_a_401_with_a_challenge(self, url):
        response = APIClient().get(url)

        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Token")

    def test_a_wrong_token_is_a_401(self):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef")

        assert client.get("/api/v1/requests/").status_code == 401

    def test_a_known_token_costs_no_query_on_later_requests(self, django_assert_num_queries):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=UserFactory())[1]}")
        assert client.get("/api/v1/routes/").status_code == 200
        with django_assert_num_queries(0):
            assert client.get("/api/v1/routes/").status_code == 200

    def test_a_deleted_token_is_refused_once_its_check_expires(self, settings):
        settings.API_TOKEN_CACHE_S = settings.API_TOKEN_TRUST_S = 0.2
        token, key = api_token_create(user=UserFactory())
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.get("/api/v1/routes/").status_code == 200
        # Behind the signals' back (SQL), as no change of the auth version tells this process.
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM knox_authtoken WHERE digest = %s", [token.digest])
        time.sleep(0.25)
        assert client.get("/api/v1/routes/").status_code == 401

    def test_a_deleted_token_is_refused_at_once_by_the_process_that_deleted_it(self, settings):
        settings.API_TOKEN_CACHE_S = 60
        token, key = api_token_create(user=UserFactory())
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.get("/api/v1/routes/").status_code == 200
        api_token_revoke(token=token)
        assert client.get("/api/v1/routes/").status_code == 401

    @pytest.mark.parametrize("change", ["deactivated", "deleted"])
    def test_a_changed_user_is_checked_again_at_once(self, settings, change):
        settings.API_TOKEN_CACHE_S = 60
        user = UserFactory()
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user)[1]}")
        assert client.get("/api/v1/routes/").status_code == 200
        if change == "deactivated":
            user.is_active = False
            user.save()
        else:
            user.delete()
        assert client.get("/api/v1/routes/").status_code == 401

    def test_a_deactivated_user_is_refused_at_once_when_caching_is_off(self, settings):
        settings.API_TOKEN_CACHE_S = 0
        user = UserFactory()
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user)[1]}")
        assert client.get("/api/v1/routes/").status_code == 200
        user.is_active = False
        user.save()
        assert client.get("/api/v1/routes/").status_code == 401

    def test_a_session_works_too(self):
        client = APIClient()
        client.force_login(UserFactory())

        assert client.get("/api/v1/requests/").status_code == 200


class TestHealth:
    def test_ok_without_login(self):
        response = APIClient().get(HEALTH_URL)

        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert body["database"] == "ok"
        assert body["cache"] == "ok"
        assert body["version"]

    def test_a_dead_cache_is_a_quick_503(self, settings):
        settings.CACHES = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
                "OPTIONS": {
                    "CLIENT_CLASS": "django_redis.client.DefaultClient",
                    "SOCKET_CONNECT_TIMEOUT": 0.25,
                    "SOCKET_TIMEOUT": 0.25,
                },
            }
        }
        started = time.monotonic()

        response = APIClient().get(HEALTH_URL)

        assert time.monotonic() - started < 2.0
        assert response.status_code == 503
        assert response.json()["status"] == "error"
        assert response.json()["cache"] == "error"
        assert response.json()["database"] == "ok"

    def test_a_dead_database_is_a_503(self, monkeypatch):
        from django.db import connections

        def refuse(*args, **kwargs):
            raise OperationalError("connection refused")

        # On the class: the check runs in a thread of its own, with its own connection.
        monkeypatch.setattr(type(connections["default"]), "cursor", refuse)

        response = APIClient().get(HEALTH_URL)

        assert response.status_code == 503
        assert response.json()["database"] == "error"
        assert response.json()["cache"] == "ok"


class TestSchema:
    def test_schema_generation_validates_without_warnings(self, tmp_path):
        out = tmp_path / "schema.yml"

        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

        schema = yaml.safe_load(out.read_text())
        assert schema["openapi"].startswith("3.")
        for path in [
            "/api/v1/auth/token/",
            "/api/v1/requests/",
            "/api/v1/requests/{request_id}/",
            "/api/v1/requests/{request_id}/feedback/",
            "/api/v1/requests/{request_id}/escalate/",
            "/api/v1/routes/",
            "/api/v1/stats/timings/",
            "/api/v1/health/",
        ]:
            assert path in schema["paths"]
        created = schema["paths"]["/api/v1/requests/"]["post"]["responses"]["201"]["content"]
        assert {"application/json", "text/event-stream"} <= set(created)

    def test_schema_is_served(self):
        response = APIClient().get("/api/v1/schema/", {"format": "json"})

        assert response.status_code == 200
        assert response.json()["info"]["title"] == "ClubOS API"

    @pytest.mark.parametrize("url", ["/api/v1/docs/", "/api/v1/redoc/"])
    def test_docs_load_their_assets_from_this_server(self, url):
        response = APIClient().get(url)

        assert response.status_code == 200
        html = response.content.decode()
        assert "/static/drf_spectacular_sidecar/" in html
        assert "cdn.jsdelivr.net" not in html
        assert "unpkg.com" not in html
