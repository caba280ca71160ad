"""API tokens as their holders and the admins see them: hashed, expiring, revocable."""

import hashlib
import importlib
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.accounts.factories import AuthTokenFactory, authorization
from tests.requestlogs.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
REVOKE_URL = "/api/v1/auth/token/revoke/"
REVOKE_ALL_URL = "/api/v1/auth/token/revoke-all/"
ROUTES_URL = "/api/v1/routes/"
CHANGELIST = "admin:knox_authtoken_changelist"


def client_with(token: AuthToken | str) -> APIClient:
    client = APIClient()
    header = token if isinstance(token, str) else authorization(token)
    client.credentials(HTTP_AUTHORIZATION=header)
    return client


def log_in(user) -> dict:
    response = APIClient().post(
        TOKEN_URL, {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    return response.json()


class TestIssued:
    def test_the_database_holds_a_digest_never_the_token(self):
        user = UserFactory()

        token = log_in(user)["token"]

        row = AuthToken.objects.get(user=user)
        assert row.digest == hashlib.sha512(token.encode()).hexdigest()
        assert token not in row.digest
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM knox_authtoken")
            stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
        assert token not in stored
        assert not Token.objects.exists()  # nothing in DRF's clear-text table either

    def test_the_answer_says_when_the_token_expires(self, settings):
        settings.API_TOKEN_TTL = timedelta(days=30)
        before = timezone.now()

        body = log_in(UserFactory())

        expiry = AuthToken.objects.get().expiry
        assert expiry is not None
        assert timedelta(days=30) <= expiry - before < timedelta(days=30, minutes=1)
        assert body["expiry"] == expiry.isoformat().replace("+00:00", "Z")

    def test_an_expired_token_is_a_401_saying_so(self):
        token = AuthTokenFactory(expiry=timezone.now() - timedelta(seconds=1))

        response = client_with(token).get(ROUTES_URL)

        assert response.status_code == 401
        assert "expired" in response.json()["detail"]
        assert response.headers["WWW-Authenticate"].startswith("Token")

    def test_a_token_remembered_by_the_process_is_refused_once_it_expires(self, settings):
        settings.API_TOKEN_CACHE_S = settings.API_TOKEN_TRUST_S = 60
        token = AuthTokenFactory(expiry=timezone.now() + timedelta(milliseconds=300))
        client = client_with(token)
        assert client.get(ROUTES_URL).status_code == 200
        while timezone.now() < token.expiry:
            time.sleep(0.01)

        assert client.get(ROUTES_URL).status_code == 401

    def test_expired_tokens_are_cleared_when_the_user_logs_in_again(self):
        user = UserFactory()
        AuthTokenFactory(user=user, expiry=timezone.now() - timedelta(days=1))
        live = AuthTokenFactory(user=user)

        log_in(user)

        assert AuthToken.objects.filter(user=user).count() == 2
        assert AuthToken.objects.filter(pk=live.pk).exists()

    def test_a_token_that_is_not_ascii_is_a_401(self):
        response = client_with("Token caf\u00e9".encode().decode("latin-1")).get(ROUTES_URL)

        assert response.status_code == 401


class TestRevokedByItsHolder:
    def test_revoking_the_token_in_use_refuses_it_at_once_and_keeps_the_others(self):
        user = UserFactory()
        used, other = AuthTokenFactory(user=user), AuthTokenFactory(user=user)
        client = client_with(used)
        assert client.get(ROUTES_URL).status_code == 200

        response = client.post(REVOKE_URL)

        assert response.status_code == 204
        assert client.get(ROUTES_URL).status_code == 401
        assert client_with(other).get(ROUTES_URL).status_code == 200

    def test_revoking_all_refuses_every_token_of_the_user_and_no_one_elses(self):
        user = UserFactory()
        tokens = [AuthTokenFactory(user=user) for _ in range(3)]
        someone_else = AuthTokenFactory()
        for token in tokens:
            assert client_with(token).get(ROUTES_URL).status_code == 200

        response = client_with(tokens[0]).post(REVOKE_ALL_URL)

        assert response.status_code == 200
        assert response.json() == {"revoked": 3}
        assert [client_with(t).get(ROUTES_URL).status_code for t in tokens] == [401] * 3
        assert client_with(someone_else).get(ROUTES_URL).status_code == 200

    def test_a_console_session_revokes_all_but_has_no_current_token(self):
        user = UserFactory()
        token = AuthTokenFactory(user=user)
        session = APIClient(enforce_csrf_checks=False)
        session.force_login(user)

        assert session.post(REVOKE_URL).status_code == 400
        assert session.post(REVOKE_ALL_URL).json() == {"revoked": 1}
        assert client_with(token).get(ROUTES_URL).status_code == 401

    def test_revoking_needs_a_login(self):
        assert APIClient().post(REVOKE_URL).status_code == 401
        assert APIClient().post(REVOKE_ALL_URL).status_code == 401


class TestAdmin:
    @pytest.fixture
    def admin(self, client):
        client.force_login(UserFactory(is_staff=True, groups=["admin"]))
        return client

    def test_the_list_shows_whose_token_until_when_and_never_a_digest(self, admin):
        token = AuthTokenFactory(user=UserFactory(username="kiosk-bedford"))
        AuthTokenFactory(expiry=timezone.now() - timedelta(days=1))

        page = admin.get(reverse(CHANGELIST), {"q": "bedford"})

        assert page.status_code == 200
        assert list(page.context["cl"].result_list) == [token]
        assert "kiosk-bedford" in page.content.decode()
        assert token.key not in page.content.decode()
        live = admin.get(reverse(CHANGELIST), {"state": "live"}).context["cl"].result_list
        assert list(live) == [token]

    def test_an_admin_revokes_anyones_tokens_with_the_action(self, admin):
        victim = AuthTokenFactory()
        kept = AuthTokenFactory()
        assert client_with(victim).get(ROUTES_URL).status_code == 200

        response = admin.post(
            reverse(CHANGELIST),
            {"action": "revoke_selected", "_selected_action": [victim.pk]},
            follow=True,
        )

        assert response.status_code == 200
        assert "Revoked 1 token" in response.content.decode()
        assert client_with(victim).get(ROUTES_URL).status_code == 401
        assert client_with(kept).get(ROUTES_URL).status_code == 200

    def test_the_delete_page_revokes_too(self, admin):
        victim = AuthTokenFactory()
        assert client_with(victim).get(ROUTES_URL).status_code == 200
        url = reverse("admin:knox_authtoken_delete", args=[victim.pk])

        assert admin.post(url, {"post": "yes"}).status_code == 302

        assert client_with(victim).get(ROUTES_URL).status_code == 401

    def test_an_admin_issues_a_token_shown_once(self, admin):
        user = UserFactory()

        response = admin.post(reverse("admin:knox_authtoken_add"), {"user": user.pk}, follow=True)

        assert response.status_code == 200
        [message] = [str(m) for m in response.context["messages"] if "shown this once" in str(m)]
        key = message.rsplit(" ", 1)[-1]
        assert client_with(f"Token {key}").get(ROUTES_URL).status_code == 200
        assert AuthToken.objects.get(user=user).expiry is not None

    def test_support_staff_cannot_see_tokens(self, client):
        client.force_login(UserFactory(is_staff=True, groups=["support"]))

        assert client.get(reverse(CHANGELIST)).status_code == 403


def test_the_migration_converts_clear_tokens_so_their_clients_keep_working():
    user = UserFactory()
    clear = Token.objects.create(user=user)
    migration = importlib.import_module("accounts.migrations.0001_hashed_tokens")

    migration.tokens_to_knox(django_apps, SimpleNamespace(connection=connection))

    assert not Token.objects.exists()
    row = AuthToken.objects.get(user=user)
    assert row.digest != clear.key
    assert row.expiry is not None
    assert client_with(f"Token {clear.key}").get(ROUTES_URL).status_code == 200
