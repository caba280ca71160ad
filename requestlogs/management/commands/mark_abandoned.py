"""Mark requests a killed process left ``received`` as ``abandoned`` (run from cron)."""

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from requestlogs.services import request_logs_mark_abandoned


class Command(BaseCommand):
    help = "Mark requests still 'received' after N minutes as 'abandoned'."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--minutes",
            type=int,
            default=5,
            help="How old a 'received' request must be (default 5; longer than any deadline).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        minutes = options["minutes"]
        if minutes < 1:
            raise CommandError(
                "--minutes must be at least 1: a younger request may still be running."
            )
        count = request_logs_mark_abandoned(older_than=timedelta(minutes=minutes))
        self.stdout.write(f"Marked {count} request(s) older than {minutes} min as abandoned.")
