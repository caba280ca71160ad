"""Login lockout (django-axes): the admin login refuses an address or username after repeated
failures, counts the token endpoint's failures too, and an admin can unlock."""

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from tests.requestlogs.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LOGIN_URL = reverse("admin:login")
TOKEN_URL = "/api/v1/auth/token/"
FAILURE_LIMIT = 5


def admin_login(client, username: str, password: str, **extra: str):
    return client.post(
        LOGIN_URL, {"username": username, "password": password, "next": "/admin/"}, **extra
    )


def assert_locked_out(response) -> None:
    assert response.status_code == 429
    assert int(response["Retry-After"]) == 15 * 60
    text = response.content.decode()
    assert "Too many failed logins" in text
    assert "ask an admin to unlock it" in text


def test_admin_login_locks_after_repeated_failures_then_an_admin_unlocks(client):
    staff = UserFactory(superuser=True)

    for _ in range(FAILURE_LIMIT - 1):
        response = admin_login(client, staff.username, "wrong")
        assert response.status_code == 200  # the form again, with its error
        assert b"Please enter the correct username and password" in response.content
    # The failure that reaches the limit is answered with the lockout.
    assert_locked_out(admin_login(client, staff.username, "wrong"))

    # The right password is refused now: 300 guesses cannot end in a login.
    assert_locked_out(admin_login(client, staff.username, PASSWORD))
    # From another address too (the username is locked), and any account from this address.
    assert_locked_out(admin_login(client, staff.username, PASSWORD, REMOTE_ADDR="10.1.1.1"))
    other = UserFactory(superuser=True)
    assert_locked_out(admin_login(client, other.username, PASSWORD))

    # Another admin, already signed in, unlocks in Axes' admin: delete the access attempts.
    unlocker = UserFactory(superuser=True)
    admin = Client()
    admin.force_login(unlocker)
    changelist = reverse("admin:axes_accessattempt_changelist")
    page = admin.get(changelist)
    assert staff.username.encode() in page.content
    ids = [str(pk) for pk in AccessAttempt.objects.values_list("pk", flat=True)]
    done = admin.post(
        changelist, {"action": "delete_selected", "_selected_action": ids, "post": "yes"}
    )
    assert done.status_code == 302
    assert not AccessAttempt.objects.exists()

    response = admin_login(client, staff.username, PASSWORD)
    assert response.status_code == 302
    assert response.url == "/admin/"


def test_the_reset_command_unlocks_a_username(client):
    staff = UserFactory(superuser=True)
    for n in range(FAILURE_LIMIT):
        admin_login(client, staff.username, "wrong", REMOTE_ADDR=f"10.2.0.{n}")
    assert_locked_out(admin_login(client, staff.username, PASSWORD, REMOTE_ADDR="10.2.0.50"))

    call_command("axes_reset_username", staff.username)

    assert admin_login(client, staff.username, PASSWORD, REMOTE_ADDR="10.2.0.50").status_code == 302


def test_wrong_passwords_on_the_token_endpoint_lock_the_admin_login_too(client):
    staff = UserFactory(superuser=True)
    api = APIClient()
    # Each try from its own address: the per-address limits never apply, the username's do.
    for n in range(FAILURE_LIMIT):
        response = api.post(
            TOKEN_URL,
            {"username": staff.username, "password": "wrong"},
            format="json",
            REMOTE_ADDR=f"10.3.0.{n}",
        )
        assert response.status_code == 400

    assert_locked_out(admin_login(client, staff.username, PASSWORD, REMOTE_ADDR="10.3.0.99"))


def test_a_successful_login_clears_earlier_failures(client):
    staff = UserFactory(superuser=True)
    for _ in range(FAILURE_LIMIT - 1):
        admin_login(client, staff.username, "wrong")
    assert admin_login(client, staff.username, PASSWORD).status_code == 302
    client.logout()

    for _ in range(FAILURE_LIMIT - 1):
        assert admin_login(client, staff.username, "wrong").status_code == 200
    assert admin_login(client, staff.username, PASSWORD).status_code == 302


def test_authenticate_without_a_request_is_not_refused():
    # The test client's login and management commands call authenticate() with no request:
    # nothing to count, and Axes' own backend would raise instead of authenticating.
    staff = UserFactory(superuser=True)

    assert Client().login(username=staff.username, password=PASSWORD)


def test_the_lockout_middleware_runs_on_the_event_loop(settings):
    """Axes' middleware is async-capable: under the ASGI server it adds no trip to a thread
    (only building a lockout response takes one)."""
    import asyncio
    import threading

    from asgiref.sync import iscoroutinefunction
    from axes.middleware import AxesMiddleware
    from django.http import HttpResponse
    from django.test import RequestFactory

    assert "axes.middleware.AxesMiddleware" in settings.MIDDLEWARE
    seen: list[threading.Thread] = []

    async def view(request):
        seen.append(threading.current_thread())
        return HttpResponse("ok")

    middleware = AxesMiddleware(view)
    assert iscoroutinefunction(middleware)

    async def call() -> tuple[HttpResponse, threading.Thread]:
        response = await middleware(RequestFactory().get("/"))
        return response, threading.current_thread()

    response, loop_thread = asyncio.run(call())
    assert response.status_code == 200
    assert seen == [loop_thread]
