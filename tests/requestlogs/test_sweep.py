"""The abandoned-row sweep: a killed server's rows are marked within a minute, with no restart,
and a request still running is never marked.
"""

import threading
from datetime import timedelta

import httpx2
import pytest
from django.utils import timezone

from accounts.services import api_token_create
from config.services import system_config_update
from requestlogs.models import RequestLog, RequestStatus
from requestlogs.services import (
    ABANDONED_ERROR,
    request_logs_abandoned_after,
    request_logs_mark_abandoned,
)
from routing.services import route_catalog_invalidate
from tests.requestlogs.api_factories import default_routes_ensure
from tests.requestlogs.factories import RequestLogFactory, UserFactory
from tests.requestlogs.processes import free_port, kill, start_server, start_worker, stop, wait_for


@pytest.mark.django_db
class TestTheCutoff:
    def test_is_the_longest_a_request_can_take_plus_the_margin(self, settings, routes):
        settings.REQUEST_ABANDONED_MARGIN_S = 10
        system_config_update(assistant_timeout_s=20)
        # LLM routing (15 s) + the assistant's deadline + the margin.
        assert request_logs_abandoned_after() == timedelta(seconds=45)

    def test_a_route_with_a_longer_deadline_moves_it(self, settings, routes):
        settings.REQUEST_ABANDONED_MARGIN_S = 10
        system_config_update(assistant_timeout_s=20)
        routes["tech"].timeout_s = 90
        routes["tech"].save()
        route_catalog_invalidate()
        assert request_logs_abandoned_after() == timedelta(seconds=115)

    def test_one_update_marks_only_rows_past_it(self, routes, django_assert_num_queries):
        after = request_logs_abandoned_after()
        old = RequestLogFactory(status=RequestStatus.RECEIVED)
        RequestLog.objects.filter(pk=old.pk).update(
            created_at=timezone.now() - after - timedelta(seconds=1)
        )
        live = RequestLogFactory(status=RequestStatus.RECEIVED)
        RequestLog.objects.filter(pk=live.pk).update(
            created_at=timezone.now() - after + timedelta(seconds=5)
        )

        with django_assert_num_queries(1):
            assert request_logs_mark_abandoned(older_than=after) == 1
        assert request_logs_mark_abandoned(older_than=after) == 0  # idempotent

        old.refresh_from_db()
        live.refresh_from_db()
        assert (old.status, old.error) == (RequestStatus.ABANDONED, ABANDONED_ERROR)
        assert live.status == RequestStatus.RECEIVED


@pytest.mark.django_db(transaction=True)
def test_a_killed_servers_row_is_marked_abandoned_within_a_minute(fake_openai_server):
    default_routes_ensure()
    # A short deadline keeps the test short: the cutoff is 15 + 5 + 10 s; the sweep's
    # interval and margin are production's.
    system_config_update(assistant_timeout_s=5)
    user = UserFactory()
    _, token = api_token_create(user=user)
    fake_openai_server.reset()
    fake_openai_server.configure(ttft_s=60, latency_s=60)  # the answer never comes in time
    port = free_port()
    upstream = {
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": fake_openai_server.base_url,
        "ASSISTANT_BACKEND": "openai-responses",
    }
    worker = start_worker()
    server = start_server(port, **upstream)
    try:

        def submit() -> None:
            try:
                with httpx2.stream(
                    "POST",
                    f"http://127.0.0.1:{port}/api/v1/requests/",
                    json={"text": "TrackMan frozen in bay 3", "route": "tech"},
                    headers={"Authorization": f"Token {token}", "Accept": "text/event-stream"},
                    timeout=30,
                ) as answer:
                    for _ in answer.iter_bytes():
                        pass
            except httpx2.HTTPError:
                pass  # the server was killed under it

        threading.Thread(target=submit, daemon=True).start()
        wait_for(
            lambda: RequestLog.objects.filter(status=RequestStatus.RECEIVED).exists(),
            timeout_s=20,
            what="the request's row",
        )
        kill(server)
        row = RequestLog.objects.get()
        assert row.status == RequestStatus.RECEIVED

        waited = wait_for(
            lambda: RequestLog.objects.get(pk=row.pk).status == RequestStatus.ABANDONED,
            timeout_s=75,
            what="the sweep to mark the row",
        )
    finally:
        kill(server)
        stop(worker)

    assert waited < 60
    row.refresh_from_db()
    assert row.error == ABANDONED_ERROR


@pytest.mark.django_db(transaction=True)
def test_the_worker_s_sweep_also_drops_task_rows_after_a_day(routes):
    from django_tasks_db.models import DBTaskResult

    from requestlogs.management.commands.tasks_worker import sweep
    from requestlogs.tasks import alert_send

    old, recent = alert_send.enqueue(1), alert_send.enqueue(2)
    DBTaskResult.objects.filter(pk=old.id).update(
        status="SUCCESSFUL", enqueued_at=timezone.now() - timedelta(days=2)
    )
    DBTaskResult.objects.filter(pk=recent.id).update(status="SUCCESSFUL")

    sweep()

    assert not DBTaskResult.objects.filter(pk=old.id).exists()
    assert DBTaskResult.objects.filter(pk=recent.id).exists()


@pytest.mark.django_db(transaction=True)
def test_the_worker_s_sweep_deletes_expired_api_tokens():
    from knox.models import AuthToken

    from requestlogs.management.commands.tasks_worker import sweep

    user = UserFactory()
    expired, _ = api_token_create(user=user)
    live, _ = api_token_create(user=user)
    AuthToken.objects.filter(pk=expired.pk).update(expiry=timezone.now() - timedelta(seconds=1))

    sweep()

    assert list(AuthToken.objects.filter(user=user)) == [live]
