"""Retention: requests past the configured number of days are deleted with their alerts, in
short batches, by `manage.py purge_request_logs` and once an interval by the task worker;
newer requests stay, and requests keep being written while a purge runs.
"""

import gzip
import io
import json
import math
import os
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from requestlogs import services
from requestlogs.models import Alert, RequestLog
from requestlogs.services import (
    PurgeProgress,
    request_logs_delete_older_than,
    request_logs_retention_sweep,
)
from tests.requestlogs.factories import AlertFactory, RequestLogFactory


def _aged(days: float, count: int = 1, **fields: object) -> list[RequestLog]:
    created = timezone.now() - timedelta(days=days)
    return RequestLogFactory.create_batch(count, created_at=created, **fields)


@pytest.fixture
def history() -> dict[str, list[RequestLog]]:
    """Five requests from 40 days ago (two with alerts) and two within the last 30 days."""
    old = _aged(40, 5)
    AlertFactory(request=old[0])
    AlertFactory(request=old[1])
    recent = _aged(29) + _aged(0.01)
    AlertFactory(request=recent[0])
    return {"old": old, "recent": recent}


def _ids(logs: list[RequestLog]) -> set[object]:
    return {log.pk for log in logs}


@pytest.mark.django_db
class TestTheService:
    def test_requests_past_the_cutoff_go_with_their_alerts_and_newer_ones_stay(self, history):
        steps: list[PurgeProgress] = []

        result = request_logs_delete_older_than(days=30, batch_size=2, progress=steps.append)

        assert (result.requests, result.alerts, result.batches) == (5, 2, 3)
        assert result.finished
        assert set(RequestLog.objects.values_list("pk", flat=True)) == _ids(history["recent"])
        assert list(Alert.objects.values_list("request_id", flat=True)) == [history["recent"][0].pk]
        # One progress report per batch, each with the running totals.
        assert [(s.batches, s.requests) for s in steps] == [(1, 2), (2, 4), (3, 5)]

    def test_a_second_run_finds_nothing_to_do(self, history):
        request_logs_delete_older_than(days=30)

        again = request_logs_delete_older_than(days=30)

        assert (again.requests, again.batches, again.finished) == (0, 0, True)
        assert RequestLog.objects.count() == 2

    def test_a_dry_run_counts_and_deletes_nothing(self, history):
        result = request_logs_delete_older_than(days=30, dry_run=True)

        assert (result.requests, result.alerts) == (5, 2)
        assert RequestLog.objects.count() == 7

    def test_a_time_budget_stops_after_a_batch_and_says_more_is_left(self, history):
        result = request_logs_delete_older_than(days=30, batch_size=2, max_seconds=0)

        assert (result.requests, result.finished) == (2, False)
        assert RequestLog.objects.count() == 5

    def test_the_archive_holds_each_deleted_request_with_its_alerts(self, history):
        archive = io.StringIO()

        request_logs_delete_older_than(days=30, batch_size=3, archive=archive)

        lines = [json.loads(line) for line in archive.getvalue().splitlines()]
        assert {line["id"] for line in lines} == {str(pk) for pk in _ids(history["old"])}
        by_id = {line["id"]: line for line in lines}
        first = by_id[str(history["old"][0].pk)]
        assert first["text"] == history["old"][0].text
        assert [a["kind"] for a in first["alerts"]] == ["escalation"]
        assert by_id[str(history["old"][2].pk)]["alerts"] == []

    def test_a_request_younger_than_a_day_can_never_be_purged(self):
        with pytest.raises(ValueError, match="at least 1"):
            request_logs_delete_older_than(days=0.5)

    @pytest.mark.parametrize("days", [math.nan, math.inf, 1e6])
    def test_a_days_figure_that_is_not_a_span_of_dates_is_refused(self, history, days):
        with pytest.raises(ValueError, match="days must be at"):
            request_logs_delete_older_than(days=days)
        assert RequestLog.objects.count() == 7


@pytest.mark.django_db
class TestTheCommand:
    def test_prints_each_batch_with_counts_and_rate_then_a_summary(self, history):
        out = io.StringIO()

        call_command("purge_request_logs", days=30, batch_size=2, stdout=out)

        lines = out.getvalue().splitlines()
        assert lines[0] == "5 request(s) older than 30 days to delete, in batches of 2."
        assert lines[1].startswith("batch 1: 2 of 5 (40%) request(s) and ")
        assert lines[3].startswith("batch 3: 5 of 5 (100%) request(s) and 2 alert(s) deleted, ")
        assert lines[3].endswith(" requests/s")
        assert lines[4].startswith("Deleted 5 request(s) and 2 alert(s) older than ")
        assert " in 3 batch(es), " in lines[4]
        assert RequestLog.objects.count() == 2

    def test_dry_run_says_what_would_go(self, history):
        out = io.StringIO()

        call_command("purge_request_logs", "--days", "30", "--dry-run", stdout=out)

        assert out.getvalue().startswith("Dry run: 5 request(s) and 2 alert(s) older than ")
        assert RequestLog.objects.count() == 7

    def test_archives_to_a_gzipped_json_lines_file(self, history, tmp_path):
        path = tmp_path / "requests.jsonl.gz"

        call_command("purge_request_logs", days=30, archive=str(path), stdout=io.StringIO())

        with gzip.open(path, "rt", encoding="utf-8") as archived:
            ids = {json.loads(line)["id"] for line in archived}
        assert ids == {str(pk) for pk in _ids(history["old"])}

    def test_takes_the_days_from_the_setting(self, history, settings):
        settings.REQUEST_LOG_RETENTION_DAYS = 30

        call_command("purge_request_logs", stdout=io.StringIO())

        assert RequestLog.objects.count() == 2

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--days", "nan"], "--days must be at least 1"),
            (["--days", "inf"], "--days must be at most 36,525"),
            (["--days", "1000000"], "--days must be at most 36,525"),
            (["--days", "30", "--batch-size", "99999999999999999999"], "at most 100,000"),
            (["--days", "30", "--pause", "inf"], "--pause must be a number of seconds"),
            (["--days", "30", "--pause", "nan"], "--pause must be a number of seconds"),
        ],
    )
    def test_out_of_range_numbers_get_a_message_and_delete_nothing(self, history, args, message):
        with pytest.raises(CommandError, match=message):
            call_command("purge_request_logs", *args, stdout=io.StringIO())
        assert RequestLog.objects.count() == 7

    def test_with_no_retention_configured_asks_for_days(self, history, settings):
        settings.REQUEST_LOG_RETENTION_DAYS = 0

        with pytest.raises(CommandError, match="pass --days"):
            call_command("purge_request_logs", stdout=io.StringIO())
        with pytest.raises(CommandError, match="at least 1"):
            call_command("purge_request_logs", days=0.5, stdout=io.StringIO())
        assert RequestLog.objects.count() == 7


@pytest.mark.django_db
class TestTheWorkersScheduledRun:
    def test_is_off_unless_a_retention_is_set(self, history, settings):
        settings.REQUEST_LOG_RETENTION_DAYS = 0

        assert request_logs_retention_sweep() is None
        assert RequestLog.objects.count() == 7

    def test_runs_once_an_interval_whichever_worker_sweeps(self, history, settings):
        settings.REQUEST_LOG_RETENTION_DAYS = 30

        first = request_logs_retention_sweep()
        assert first is not None and first.requests == 5
        # Within the interval, another sweep (this worker's or another's) leaves it alone.
        late = _aged(31)
        assert request_logs_retention_sweep() is None
        assert RequestLog.objects.filter(pk=late[0].pk).exists()

    def test_a_backlog_is_carried_on_by_the_next_sweep(self, history, settings, monkeypatch):
        settings.REQUEST_LOG_RETENTION_DAYS = 30
        settings.REQUEST_LOG_RETENTION_BATCH = 2
        # A budget that one batch exhausts: as a huge backlog would be, sweep after sweep.
        monkeypatch.setattr(services, "RETENTION_SWEEP_BUDGET_S", 0)

        counts = []
        while (run := request_logs_retention_sweep()) is not None and not run.finished:
            counts.append(run.requests)

        assert counts == [2, 2, 1]
        assert RequestLog.objects.count() == 2
        assert request_logs_retention_sweep() is None  # done: the lease holds till next time


@pytest.mark.django_db(transaction=True)
def test_the_task_workers_sweep_runs_the_retention(settings):
    from requestlogs.management.commands.tasks_worker import sweep

    old, recent = _aged(40), _aged(29)
    settings.REQUEST_LOG_RETENTION_DAYS = 30

    sweep()

    assert not RequestLog.objects.filter(pk=old[0].pk).exists()
    assert RequestLog.objects.filter(pk=recent[0].pk).exists()


@pytest.mark.django_db(transaction=True)
def test_requests_are_written_while_a_purge_batch_holds_its_rows():
    if connection.vendor != "postgresql":
        pytest.skip("row locks and concurrent writers: PostgreSQL's")
    old = _aged(40, 200)
    recent = _aged(0.01)[0]
    reader, writer = os.pipe()
    errors: list[BaseException] = []

    def purge() -> None:
        from django.db import connection as own

        try:
            # The archive is a pipe nobody reads yet: the batch's transaction stays open,
            # its rows locked, while this test writes beside it.
            with os.fdopen(writer, "w", encoding="utf-8") as archive:
                request_logs_delete_older_than(days=30, batch_size=500, archive=archive)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    thread = threading.Thread(target=purge)
    thread.start()
    try:
        with os.fdopen(reader, "rb") as pipe:
            assert pipe.read(1)  # the batch is open: it has begun archiving
            with connection.cursor() as cursor:
                # A write the purge blocked fails here instead of waiting on it for good.
                cursor.execute("SET statement_timeout = '3s'")
            started = time.monotonic()
            inserted = RequestLogFactory()
            RequestLog.objects.filter(pk=recent.pk).update(feedback_helpful=True)
            took = time.monotonic() - started
            assert thread.is_alive()  # the batch was still open meanwhile
            pipe.read()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
        thread.join(timeout=30)

    assert not errors
    assert took < 1.0
    assert not RequestLog.objects.filter(pk__in=_ids(old)).exists()
    assert set(RequestLog.objects.values_list("pk", flat=True)) == {recent.pk, inserted.pk}
