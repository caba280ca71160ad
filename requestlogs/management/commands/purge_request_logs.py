"""Delete (and optionally archive) the requests older than a number of days, in batches.

    python manage.py purge_request_logs                  # REQUEST_LOG_RETENTION_DAYS
    python manage.py purge_request_logs --days 90 --dry-run
    python manage.py purge_request_logs --days 90 --archive /backups/requests-$(date +%F).jsonl.gz

For cron (the task worker also runs it once an hour when REQUEST_LOG_RETENTION_DAYS is set).
Each batch is one short transaction; requests keep being accepted and answered meanwhile.
"""

import gzip
import math
from argparse import ArgumentParser
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from requestlogs.services import (
    RETENTION_MAX_BATCH,
    RETENTION_MAX_DAYS,
    RETENTION_MIN_DAYS,
    PurgeProgress,
    request_logs_delete_older_than,
)

# Between batches; time.sleep() cannot take an infinite (or astronomically long) pause.
PAUSE_MAX_S = 3600.0


@contextmanager
def _archive_opened(path: Path | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
        return
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "at", encoding="utf-8") as compressed:
                yield compressed
        else:
            with path.open("a", encoding="utf-8") as plain:
                yield plain
    except OSError as exc:
        raise CommandError(f"Cannot write the archive {path}: {exc}") from exc


class Command(BaseCommand):
    help = (
        "Delete requests (and their Slack alerts) older than --days days, in short batches, "
        "printing progress; --archive writes them to a JSON-lines file first."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--days",
            type=float,
            default=None,
            help="Delete requests older than this many days (default: "
            f"REQUEST_LOG_RETENTION_DAYS; at least {RETENTION_MIN_DAYS:g}).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=settings.REQUEST_LOG_RETENTION_BATCH,
            help="Requests per batch, each its own transaction (default: "
            "REQUEST_LOG_RETENTION_BATCH).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be deleted; delete nothing.",
        )
        parser.add_argument(
            "--archive",
            type=Path,
            default=None,
            metavar="PATH",
            help="Append each batch to PATH as JSON lines (one request with its alerts per "
            "line; gzip-compressed if PATH ends in .gz) before deleting it.",
        )
        parser.add_argument(
            "--pause",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="Sleep this long between batches, to spread the load (default: 0).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if days is None:
            days = settings.REQUEST_LOG_RETENTION_DAYS
            if days <= 0:
                raise CommandError(
                    "No retention is configured: pass --days or set REQUEST_LOG_RETENTION_DAYS."
                )
        # NaN fails every comparison: each check is written so that it is refused.
        if not days >= RETENTION_MIN_DAYS:
            raise CommandError(
                f"--days must be at least {RETENTION_MIN_DAYS:g}: younger requests may still "
                "be running."
            )
        if days > RETENTION_MAX_DAYS:
            raise CommandError(f"--days must be at most {RETENTION_MAX_DAYS:,g} (a century).")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["batch_size"] > RETENTION_MAX_BATCH:
            raise CommandError(f"--batch-size must be at most {RETENTION_MAX_BATCH:,}.")
        if options["pause"] < 0:
            raise CommandError("--pause cannot be negative.")
        if not math.isfinite(options["pause"]) or options["pause"] > PAUSE_MAX_S:
            raise CommandError(f"--pause must be a number of seconds up to {PAUSE_MAX_S:g}.")
        counted = request_logs_delete_older_than(days=days, dry_run=True)
        if options["dry_run"]:
            self.stdout.write(
                f"Dry run: {counted.requests:,} request(s) and {counted.alerts:,} alert(s) older "
                f"than {counted.cutoff:%Y-%m-%d %H:%M %Z} ({days:g} days) would be deleted."
            )
            return

        total = counted.requests
        self.stdout.write(
            f"{total:,} request(s) older than {days:g} days to delete, in batches of "
            f"{options['batch_size']:,}."
        )

        def report(step: PurgeProgress) -> None:
            share = f" of {total:,} ({100 * step.requests / total:.0f}%)" if total else ""
            self.stdout.write(
                f"batch {step.batches}: {step.requests:,}{share} request(s) and "
                f"{step.alerts:,} alert(s) deleted, {step.requests_per_s:,.0f} requests/s"
            )
            self.stdout.flush()

        path = Path(options["archive"]) if options["archive"] else None
        with _archive_opened(path) as archive:
            result = request_logs_delete_older_than(
                days=days,
                batch_size=options["batch_size"],
                archive=archive,
                pause_s=options["pause"],
                progress=report,
            )
        archived = f", archived to {path}" if path is not None else ""
        self.stdout.write(
            f"Deleted {result.requests:,} request(s) and {result.alerts:,} alert(s) older than "
            f"{result.cutoff:%Y-%m-%d %H:%M %Z} in {result.batches} batch(es), "
            f"{result.elapsed_s:.1f} s ({result.requests_per_s:,.0f} requests/s){archived}."
        )
