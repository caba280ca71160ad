"""`make run`'s demo data: a login that works and a history to look at."""

import io
import re
from pathlib import Path

import pytest
from django.contrib.auth import authenticate, get_user_model
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


def test_the_demo_password_stays_the_same_from_one_run_to_the_next(tmp_path):
    """`make run` again (a second terminal, a restart) keeps the login and its sessions."""
    kept = tmp_path / "db.sqlite3.demo-login"
    first, second = io.StringIO(), io.StringIO()
    call_command("seed_demo", password_file=kept, stdout=first)
    user = get_user_model().objects.get(username="demo")
    hash_before = user.password
    call_command("seed_demo", password_file=kept, stdout=second)

    password = re.search(r"password: (\S+)", first.getvalue()).group(1)
    assert f"password: {password}" in second.getvalue()
    assert authenticate(username="demo", password=password) is not None
    user.refresh_from_db()
    assert user.password == hash_before  # the session hash too: signed-in browsers stay in
    assert kept.read_text().strip() == password
    assert kept.stat().st_mode & 0o077 == 0


def test_a_kept_password_that_no_longer_works_is_replaced(tmp_path):
    kept = tmp_path / "db.sqlite3.demo-login"
    call_command("seed_demo", password_file=kept, stdout=io.StringIO())
    user = get_user_model().objects.get(username="demo")
    user.set_password("changed-in-the-admin-1")
    user.save()
    out = io.StringIO()
    call_command("seed_demo", password_file=kept, stdout=out)
    password = re.search(r"password: (\S+)", out.getvalue()).group(1)
    assert password != "changed-in-the-admin-1"
    assert authenticate(username="demo", password=password) is not None
    assert kept.read_text().strip() == password


def test_on_the_embedded_default_the_password_is_kept_beside_the_database():
    from django.db import connection

    from clubos.management.commands.seed_demo import _default_password_file

    if connection.vendor != "sqlite":
        assert _default_password_file() is None  # a server database: a new one each run
        return
    path = _default_password_file()
    assert path is not None
    assert path.name == f"{Path(connection.settings_dict['NAME']).name}.demo-login"
    assert path.parent == Path(connection.settings_dict["NAME"]).parent
