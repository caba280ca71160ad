"""Create a demo login (printed) and a few answered requests, so a fresh install has something to show."""

import secrets
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import connection, transaction

from config.selectors import system_config_get
from requestlogs.models import Channel, RequestLog
from requestlogs.pipeline import request_answer
from requestlogs.validation import request_validate
from routing.selectors import route_catalog_get

DEMO_LOGIN_FILE_SUFFIX = ".demo-login"

DEMO_REQUESTS = [
    ("TrackMan frozen in bay 3", "auto", "Bedford"),
    ("Customer locked out, door code 4471 not working", "auto", "Dartmouth"),
    ("Need a friendly reply to a 3-star Google review about slow check-in", "auto", "Halifax"),
    ("Projector in bay 2 shows no image", "tech", "Bedford"),
    ("How much is a monthly membership?", "auto", "Truro"),
    ("Customer wants a refund for a booking cancelled by the storm", "booking", "Halifax"),
]


class Command(BaseCommand):
    help = "Create (or reset) the demo login and some demo requests, and print the login."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument(
            "--password",
            default=None,
            help="set this password; default: the one kept in --password-file if it still "
            "works, else a new random one",
        )
        parser.add_argument(
            "--password-file",
            default=None,
            type=Path,
            help="where the demo password is kept between runs; default: beside the SQLite "
            "database on the embedded default, none on other databases (a new one each run)",
        )
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="where it is served")

    def handle(
        self,
        *args: Any,
        username: str,
        password: str | None,
        password_file: Path | None,
        url: str,
        **options: Any,
    ) -> None:
        password_file = password_file or _default_password_file()
        user_model = get_user_model()
        with transaction.atomic():
            user, _ = user_model.objects.get_or_create(username=username)
            user.is_staff = True
            user.is_superuser = True
            user.first_name = user.first_name or "Demo"
            kept = _kept_password(password_file) if password is None else None
            if kept is not None and user.check_password(kept):
                # Unchanged, hash included: a session signed in from another terminal (or
                # browser) stays signed in across `make run`s.
                password = kept
            else:
                password = password or secrets.token_urlsafe(9)
                user.set_password(password)
                if password_file is not None:
                    _keep_password(password_file, password)
            user.save()
            admin_group = Group.objects.filter(name="admin").first()
            if admin_group is not None:
                user.groups.add(admin_group)
        if not RequestLog.objects.filter(user=user).exists():
            config, catalog = system_config_get(), route_catalog_get()
            for text, route, location in DEMO_REQUESTS:
                request = request_validate(
                    data={"text": text, "route": route, "location": location},
                    user=user,
                    channel=Channel.WEB,
                    config=config,
                    catalog=catalog,
                )
                # The same pipeline as every submit; its database work in this thread.
                async_to_sync(request_answer)(request=request)
        self.stdout.write(
            self.style.SUCCESS(
                "\n  ClubOS demo login\n"
                f"    URL:      {url}\n"
                f"    username: {username}\n"
                f"    password: {password}\n"
            )
        )


def _default_password_file() -> Path | None:
    """Beside the database file on the embedded default (SQLite): the password lives and
    goes with the data it opens."""
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict["NAME"])
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name).with_name(Path(name).name + DEMO_LOGIN_FILE_SUFFIX)


def _kept_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _keep_password(path: Path, password: str) -> None:
    """Readable by its owner only (created so, not narrowed after)."""
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(password + "\n", encoding="utf-8")
