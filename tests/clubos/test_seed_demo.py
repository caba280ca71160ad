"""`make run`'s demo data: a login that works and a history to look at."""

import io

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from requestlogs.models import RequestLog, RequestStatus

pytestmark = pytest.mark.django_db


def test_seed_demo_prints_a_working_login_and_answers_some_requests():
    out = io.StringIO()
    call_command("seed_demo", password="front-desk-1", url="http://127.0.0.1:8023/", stdout=out)
    printed = out.getvalue()
    assert "http://127.0.0.1:8023/" in printed
    assert "username: demo" in printed
    assert "password: front-desk-1" in printed
    user = authenticate(username="demo", password="front-desk-1")
    assert user is not None
    assert user.is_staff
    logs = RequestLog.objects.filter(user=user)
    assert logs.count() >= 5
    assert set(logs.values_list("status", flat=True)) == {RequestStatus.OK}
    assert logs.filter(text="TrackMan frozen in bay 3", route__slug="tech").exists()


def test_running_it_again_resets_the_password_without_duplicating_requests():
    call_command("seed_demo", password="first-pass-1", stdout=io.StringIO())
    count = RequestLog.objects.count()
    call_command("seed_demo", password="second-pass-2", stdout=io.StringIO())
    assert RequestLog.objects.count() == count
    assert authenticate(username="demo", password="second-pass-2") is not None
    assert authenticate(username="demo", password="first-pass-1") is None
