"""Mark requests a killed process left ``received`` as ``abandoned`` (the task worker does it
every ``TASKS_SWEEP_INTERVAL_S``; this runs one sweep by hand)."""

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from requestlogs.services import request_logs_abandoned_after, request_logs_mark_abandoned


class Command(BaseCommand):
    help = "Mark requests still 'received' after the longest a request can take as 'abandoned'."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--minutes",
            type=int,
            default=None,
            help="How old a 'received' request must be (default: the longest a request can "
            "take, from the configured deadlines, plus REQUEST_ABANDONED_MARGIN_S).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        minutes = options["minutes"]
        if minutes is not None and minutes < 1:
            raise CommandError(
                "--minutes must be at least 1: a younger request may still be running."
            )
        older_than = (
            timedelta(minutes=minutes) if minutes is not None else request_logs_abandoned_after()
        )
        count = request_logs_mark_abandoned(older_than=older_than)
        self.stdout.write(
            f"Marked {count} request(s) older than {older_than.total_seconds():.0f} s as abandoned."
        )
