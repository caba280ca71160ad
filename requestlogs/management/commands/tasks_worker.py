"""The task worker: django-tasks-db's ``db_worker``, plus the sweeps on a schedule.

    python manage.py tasks_worker

Runs the queued tasks (Slack alerts) and, every ``TASKS_SWEEP_INTERVAL_S`` (and once at
start), marks the rows a killed server left ``received`` as ``abandoned``, queues again
the alerts a killed worker left half-sent and deletes expired API tokens; once every
``REQUEST_LOG_RETENTION_INTERVAL_S`` (one worker of all) it deletes the requests older than
``REQUEST_LOG_RETENTION_DAYS``. Both sweeps are single conditional UPDATEs:
any number of workers may run beside each other. ``make run`` and ``make serve`` start it.
"""

import logging
import os
import threading
import time
from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connections
from django.tasks import TaskResultStatus
from django.utils import timezone
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV
from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand
from django_tasks_db.models import DBTaskResult

from accounts.services import api_token_delete_expired
from requestlogs.services import (
    alerts_requeue_overdue,
    request_logs_mark_abandoned,
    request_logs_retention_sweep,
)

logger = logging.getLogger(__name__)

TASK_ROWS_KEPT = timedelta(days=1)


def sweep() -> None:
    """One round of the sweeps; a database outage is logged and tried again next round."""
    try:
        abandoned = request_logs_mark_abandoned()
        if abandoned:
            logger.warning("%d request(s) left 'received' marked abandoned", abandoned)
        alerts_requeue_overdue()
        # Expired API tokens are refused already; their rows need not stay.
        api_token_delete_expired()
        # The task rows themselves are only the queue: what happened is on each alert. Rows
        # of finished tasks, and of tasks whose worker died (left running), go after a day.
        DBTaskResult.objects.filter(
            status__in=[
                TaskResultStatus.SUCCESSFUL,
                TaskResultStatus.FAILED,
                TaskResultStatus.RUNNING,
            ],
            enqueued_at__lt=timezone.now() - TASK_ROWS_KEPT,
        ).delete()
        # Last: its run may take a few seconds (a backlog is worked off round by round).
        request_logs_retention_sweep()
    except Exception:
        logger.exception("the background sweep failed; trying again next round")
    finally:
        # The thread's connection goes back (or is closed) between rounds.
        close_old_connections()
        connections.close_all()


def _sweeper(interval_s: float, stop: threading.Event) -> None:
    while True:
        sweep()
        if stop.wait(interval_s):
            return


class Command(DbWorkerCommand):
    help = "Run queued background tasks (Slack alerts) and the periodic sweeps."

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.set_defaults(interval=settings.TASKS_WORKER_INTERVAL_S, queue_name="*")
        parser.add_argument(
            "--sweep-interval",
            type=float,
            default=settings.TASKS_SWEEP_INTERVAL_S,
            help="Seconds between the sweeps (default: TASKS_SWEEP_INTERVAL_S); 0: no sweeps.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval_s = options.pop("sweep_interval")
        # Under --reload the parent process only watches files; its child does the work.
        reloading_parent = options.get("reload") and os.environ.get(DJANGO_AUTORELOAD_ENV) != "true"
        if interval_s > 0 and not reloading_parent and not options.get("batch"):
            threading.Thread(
                target=_sweeper,
                args=(interval_s, threading.Event()),
                name="sweeper",
                daemon=True,
            ).start()
        while True:
            try:
                super().handle(*args, **options)
                return
            except (OperationalError, InterfaceError) as exc:
                # django-tasks-db's loop lets a lost database end the worker: the alerts and the
                # sweeps would then stop for good after an outage. Wait it out instead.
                logger.warning("database unavailable (%s); the worker resumes in 1 s", exc)
                connections.close_all()
                time.sleep(1.0)
