"""Revocation in one process, and with Redis down: a token refused at once where the change
was made, a deleted user's submit a 401 with no model call, and token clients carrying on
through a Redis outage on the database alone."""

import time

import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from accounts.authentication import AUTH_VERSION_KEY
from accounts.services import api_token_revoke
from requestlogs.models import RequestLog
from tests.accounts.factories import AuthTokenFactory, authorization
from tests.requestlogs.api_factories import default_routes_ensure
from tests.requestlogs.factories import UserFactory

ROUTES_URL = "/api/v1/routes/"
STATS_URL = "/api/v1/stats/timings/"
SUBMIT_URL = "/api/v1/requests/"


def client_with(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization(token))
    return client


def remembered(settings) -> None:
    """A process that would trust a checked token for a minute unless told otherwise."""
    settings.API_TOKEN_CACHE_S = settings.API_TOKEN_TRUST_S = 60


def delete_behind_the_signals(user) -> None:
    """What another worker's deletion looks like to this process when nothing tells it."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM knox_authtoken WHERE user_id = %s", [user.pk])
        cursor.execute("DELETE FROM auth_user WHERE id = %s", [user.pk])


@pytest.mark.django_db
class TestInTheProcessThatMadeTheChange:
    def test_a_revoked_token_is_refused_at_once(self, settings, django_assert_num_queries):
        remembered(settings)
        token = AuthTokenFactory()
        client = client_with(token)
        assert client.get(ROUTES_URL).status_code == 200
        with django_assert_num_queries(0):
            assert client.get(ROUTES_URL).status_code == 200

        api_token_revoke(token=token)

        assert client.get(ROUTES_URL).status_code == 401

    @pytest.mark.parametrize("change", ["deactivated", "deleted"])
    def test_a_changed_user_is_refused_at_once(self, settings, change):
        remembered(settings)
        user = UserFactory()
        client = client_with(AuthTokenFactory(user=user))
        assert client.get(ROUTES_URL).status_code == 200

        if change == "deactivated":
            user.is_active = False
            user.save()
        else:
            user.delete()

        assert client.get(ROUTES_URL).status_code == 401

    def test_a_demoted_staff_user_loses_the_stats_at_once(self, settings):
        remembered(settings)
        user = UserFactory(is_staff=True)
        client = client_with(AuthTokenFactory(user=user))
        assert client.get(STATS_URL).status_code == 200

        user.is_staff = False
        user.save()

        assert client.get(STATS_URL).status_code == 403

    def test_a_console_login_does_not_make_every_token_be_checked_again(
        self, settings, django_assert_num_queries
    ):
        remembered(settings)
        user = UserFactory()
        api = client_with(AuthTokenFactory())
        assert api.get(ROUTES_URL).status_code == 200
        user.last_login = None
        user.save(update_fields=["last_login"])  # what a login writes

        with django_assert_num_queries(0):
            assert api.get(ROUTES_URL).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_user_deleted_elsewhere_gets_a_401_and_no_model_call(settings, openai_upstream):
    default_routes_ensure()
    remembered(settings)
    user = UserFactory()
    client = client_with(AuthTokenFactory(user=user))
    assert client.get(ROUTES_URL).status_code == 200
    delete_behind_the_signals(user)  # this process still trusts the token

    for accept in ("application/json", "text/event-stream"):
        response = client.post(
            SUBMIT_URL,
            {"text": "TrackMan frozen in bay 3", "route": "tech"},
            format="json",
            HTTP_ACCEPT=accept,
        )
        assert response.status_code == 401
        assert response.json() == {"detail": "This account no longer exists."}

    assert openai_upstream.calls == []
    assert not RequestLog.objects.exists()


@pytest.mark.django_db
class TestRedisDown:
    def test_the_shared_version_moves_with_every_revocation(self, own_redis_cache):
        token = AuthTokenFactory()
        assert client_with(token).get(ROUTES_URL).status_code == 200
        before = cache.get(AUTH_VERSION_KEY)
        assert before

        api_token_revoke(token=token)

        assert cache.get(AUTH_VERSION_KEY) not in (None, before)

    def test_tokens_still_authenticate_from_the_database(self, own_redis_cache):
        token = AuthTokenFactory()
        client = client_with(token)
        assert client.get(ROUTES_URL).status_code == 200

        own_redis_cache.stop()

        started = time.monotonic()
        for _ in range(5):
            assert client.get(ROUTES_URL).status_code == 200
        assert time.monotonic() - started < 2
        # A new login and a new token work too.
        fresh = AuthTokenFactory()
        assert client_with(fresh).get(ROUTES_URL).status_code == 200

    def test_without_redis_a_token_is_trusted_no_longer_than_api_token_cache_s(
        self, own_redis_cache, settings
    ):
        settings.API_TOKEN_CACHE_S = 0.3
        settings.API_TOKEN_TRUST_S = 60
        user = UserFactory()
        client = client_with(AuthTokenFactory(user=user))
        assert client.get(ROUTES_URL).status_code == 200
        own_redis_cache.stop()
        assert client.get(ROUTES_URL).status_code == 200

        delete_behind_the_signals(user)
        time.sleep(0.35)

        assert client.get(ROUTES_URL).status_code == 401

    def test_a_revocation_made_while_redis_was_down_is_told_when_it_is_back(
        self, own_redis_cache, settings
    ):
        token = AuthTokenFactory()
        assert client_with(token).get(ROUTES_URL).status_code == 200
        before = cache.get(AUTH_VERSION_KEY)
        own_redis_cache.stop()

        api_token_revoke(token=token)
        assert client_with(token).get(ROUTES_URL).status_code == 401  # here: at once

        own_redis_cache.start()
        time.sleep(1.1)  # past the retry interval after the failure
        assert client_with(AuthTokenFactory()).get(ROUTES_URL).status_code == 200
        assert cache.get(AUTH_VERSION_KEY) not in (None, before)
