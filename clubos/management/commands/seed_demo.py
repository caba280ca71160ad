"""Create a demo login (printed) and a few answered requests, so a fresh install has something to show."""

import secrets
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from config.selectors import system_config_get
from requestlogs.models import Channel, RequestLog
from requestlogs.pipeline import request_answer
from requestlogs.validation import request_validate
from routing.selectors import route_catalog_get

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
        parser.add_argument("--password", default=None, help="default: a new random one")
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="where it is served")

    def handle(
        self, *args: Any, username: str, password: str | None, url: str, **options: Any
    ) -> None:
        password = password or secrets.token_urlsafe(9)
        user_model = get_user_model()
        with transaction.atomic():
            user, _ = user_model.objects.get_or_create(username=username)
            user.is_staff = True
            user.is_superuser = True
            user.first_name = user.first_name or "Demo"
            user.set_password(password)
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
