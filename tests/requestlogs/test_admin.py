"""The request log in the admin (read-only history) and the roles that may see what."""

import importlib
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.urls import reverse
from django.utils import timezone

from requestlogs.models import Channel, RequestLog, RequestStatus, RoutingSource
from routing.models import Route
from tests.admin_forms import changeform_data
from tests.requestlogs.factories import RequestLogFactory, UserFactory
from tests.routing.factories import RouteFactory

pytestmark = pytest.mark.django_db

LOGS = reverse("admin:requestlogs_requestlog_changelist")
ROUTES = reverse("admin:routing_route_changelist")
HOUR = timedelta(hours=1)


def log_url(log: RequestLog) -> str:
    return reverse("admin:requestlogs_requestlog_change", args=[log.pk])


def route_url(route: Route) -> str:
    return reverse("admin:routing_route_change", args=[route.pk])


def shown(client, **params) -> list[RequestLog]:
    response = client.get(LOGS, params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.fixture
def superuser():
    return UserFactory(superuser=True, username="owner")


@pytest.fixture
def admin_client_(client, superuser):
    client.force_login(superuser)
    return client


# --- The list ---------------------------------------------------------------------------


def test_changelist_shows_requests_newest_first_with_readable_timings(admin_client_):
    now = timezone.now()
    older = RequestLogFactory(text="Projector in bay 2 is flickering", created_at=now - HOUR * 2)
    newer = RequestLogFactory(text="TrackMan frozen in bay 3", created_at=now - HOUR)

    response = admin_client_.get(LOGS)

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [newer, older]
    page = response.content.decode()
    assert "TrackMan frozen in bay 3" in page
    assert "0.8 ms" in page  # routing keeps a decimal
    assert "412 ms" in page
    assert "1,830 ms" in page
    assert "92%" in page


def test_long_text_is_shortened_in_the_list(admin_client_):
    RequestLogFactory(text="The screen in bay 7 " + "keeps flashing and going black " * 10)

    page = admin_client_.get(LOGS).content.decode()

    assert "keeps flashing and going black " * 10 not in page.split("title=")[0]
    assert "…" in page


def test_status_is_coloured(admin_client_):
    RequestLogFactory(status=RequestStatus.ERROR, error="upstream: 503 Service Unavailable")

    page = admin_client_.get(LOGS).content.decode()

    # By a class from the admin's stylesheet: the Content Security Policy refuses style="".
    assert '<strong class="status-badge status-badge--error">Error</strong>' in page
    assert "clubos/admin.css" in page


def test_filters_narrow_the_list(admin_client_):
    tech = RouteFactory(name="Tech")
    ok = RequestLogFactory(route=tech)
    failed = RequestLogFactory(status=RequestStatus.TIMEOUT, routing_source=RoutingSource.LLM)
    cached = RequestLogFactory(cached=True, status=RequestStatus.CACHED, channel=Channel.API)
    escalated = RequestLogFactory(escalated=True, status=RequestStatus.ESCALATED)

    assert shown(admin_client_, route__id__exact=tech.pk) == [ok]
    assert shown(admin_client_, status__exact="timeout") == [failed]
    assert shown(admin_client_, routing_source__exact="llm") == [failed]
    assert shown(admin_client_, cached__exact="1") == [cached]
    assert shown(admin_client_, escalated__exact="1") == [escalated]
    assert shown(admin_client_, channel__exact="api") == [cached]


def test_feedback_filter_tells_helpful_unhelpful_and_none_apart(admin_client_):
    helpful = RequestLogFactory(feedback_helpful=True)
    unhelpful = RequestLogFactory(feedback_helpful=False, feedback_comment="Wrong bay")
    silent = RequestLogFactory(feedback_helpful=None)

    assert shown(admin_client_, feedback="helpful") == [helpful]
    assert shown(admin_client_, feedback="not_helpful") == [unhelpful]
    assert shown(admin_client_, feedback="none") == [silent]
    page = admin_client_.get(LOGS).content.decode()
    for label in ("Helpful", "Not helpful", "No feedback"):
        assert label in page


def test_search_and_date_hierarchy(admin_client_):
    frozen = RequestLogFactory(text="TrackMan frozen in bay 3", location="Bedford")
    RequestLogFactory(text="Customer locked out", location="Truro")
    day = frozen.created_at

    assert shown(admin_client_, q="frozen in bay") == [frozen]
    assert shown(admin_client_, q="Bedford") == [frozen]
    assert set(shown(admin_client_, q="power-cycle the unit")) == set(RequestLog.objects.all())
    response = admin_client_.get(
        LOGS,
        {"created_at__year": day.year, "created_at__month": day.month, "created_at__day": day.day},
    )
    assert response.status_code == 200
    assert frozen in response.context["cl"].result_list


@pytest.mark.parametrize("lookup", ["text__regex", "answer__iregex"])
def test_a_regular_expression_in_the_lists_address_is_refused(admin_client_, lookup):
    RequestLogFactory(text="TrackMan frozen in bay 3")

    assert admin_client_.get(LOGS, {lookup: "(bay"}).status_code == 400
    assert admin_client_.get(LOGS, {"text__icontains": "(bay"}).status_code == 200


def test_changelist_query_count_does_not_grow_with_rows(
    admin_client_, django_assert_max_num_queries
):
    RequestLogFactory.create_batch(3)
    with django_assert_max_num_queries(50) as few:
        admin_client_.get(LOGS)
    RequestLogFactory.create_batch(30)

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin_client_.get(LOGS)

    assert len(response.context["cl"].result_list) == 33
    assert response.context["cl"].full_result_count is None  # no second COUNT(*)


# --- Read-only --------------------------------------------------------------------------


def test_requests_cannot_be_added(admin_client_):
    add = reverse("admin:requestlogs_requestlog_add")

    assert add not in admin_client_.get(LOGS).content.decode()
    assert add not in admin_client_.get(reverse("admin:index")).content.decode()
    assert admin_client_.get(add).status_code == 403


def test_detail_page_is_read_only_and_grouped(admin_client_):
    log = RequestLogFactory(feedback_helpful=False, feedback_comment="Wrong procedure")

    response = admin_client_.get(log_url(log))

    assert response.status_code == 200
    page = response.content.decode()
    for heading in ("Request", "Routing", "Answer", "Timings", "Feedback &amp; escalation"):
        assert f">{heading}<" in page
    assert 'name="_save"' not in page
    assert "<textarea" not in page
    assert "1,842 ms" in page
    assert "Not helpful" in page
    assert "Wrong procedure" in page


def test_posting_a_change_is_refused(admin_client_):
    log = RequestLogFactory(status=RequestStatus.ERROR)

    response = admin_client_.post(log_url(log), {"status": "ok", "answer": "All fine"})

    assert response.status_code == 403
    log.refresh_from_db()
    assert log.status == RequestStatus.ERROR


def test_only_superusers_delete_requests(client, admin_client_):
    log = RequestLogFactory()
    delete = reverse("admin:requestlogs_requestlog_delete", args=[log.pk])

    staff_admin = UserFactory(is_staff=True, groups=["admin"])
    client.force_login(staff_admin)
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert RequestLog.objects.filter(pk=log.pk).exists()

    client.force_login(UserFactory(superuser=True))
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not RequestLog.objects.filter(pk=log.pk).exists()


def test_request_text_can_become_a_route_example(admin_client_):
    route = RouteFactory(utterances="")
    log = RequestLogFactory(route=route, text="Can we book a bay for a hen party of 12?")

    response = admin_client_.post(
        LOGS, {"action": "add_to_route_examples", "_selected_action": [log.pk]}
    )

    assert response.status_code == 302
    route.refresh_from_db()
    assert route.utterance_list == ["Can we book a bay for a hen party of 12?"]


def test_a_misrouted_request_is_relabelled_and_the_router_learns_it(admin_client_):
    from config.selectors import system_config_get
    from routing.router import strategy_get
    from routing.selectors import route_catalog_get

    booking = Route.objects.get(slug="booking")
    text = "the quibbletron in the lobby ate the voucher for the 9pm slot"
    log = RequestLogFactory(route=Route.objects.get(slug="tech"), text=text)

    picker = admin_client_.post(LOGS, {"action": "relabel", "_selected_action": [log.pk]})
    assert picker.status_code == 200
    assert b"The right route" in picker.content
    assert text.encode() in picker.content

    done = admin_client_.post(
        LOGS,
        {"action": "relabel", "_selected_action": [log.pk], "apply": "1", "route": booking.pk},
    )
    assert done.status_code == 302
    log.refresh_from_db()
    assert log.corrected_route == booking
    assert log.corrected_at is not None
    booking.refresh_from_db()
    assert text in booking.utterance_list
    # The next routing decision sees a new catalog and a model retrained with the example.
    decision = strategy_get("local").decide(
        text, catalog=route_catalog_get(), config=system_config_get()
    )
    assert decision is not None
    assert decision.route.slug == "booking"


def test_relabelled_requests_can_be_filtered(admin_client_):
    booking = Route.objects.get(slug="booking")
    relabelled = RequestLogFactory(corrected_route=booking, text="relabelled one")
    RequestLogFactory(text="left alone")
    assert shown(admin_client_, corrected_route__id__exact=booking.pk) == [relabelled]


# --- Roles ------------------------------------------------------------------------------


def test_roles_migration_is_applied():
    applied = MigrationRecorder(connection).applied_migrations()
    assert ("requestlogs", "0002_roles") in applied


def test_roles_migration_reverses_and_reapplies():
    roles = importlib.import_module("requestlogs.migrations.0002_roles")
    editor = SimpleNamespace(connection=connection)

    roles.delete_roles(django_apps, editor)
    assert not Group.objects.filter(name__in=["admin", "operator", "support"]).exists()
    roles.create_roles(django_apps, editor)
    roles.create_roles(django_apps, editor)  # idempotent
    # Then accounts.0001: the admin role manages knox's hashed tokens instead of DRF's.
    tokens = importlib.import_module("accounts.migrations.0001_hashed_tokens")
    tokens.admin_role_manages_knox_tokens(django_apps, editor)

    perms = {
        name: set(
            Group.objects.get(name=name).permissions.values_list(
                "content_type__app_label", "codename"
            )
        )
        for name in ("admin", "operator", "support")
    }
    assert perms["support"] == {
        ("requestlogs", "view_requestlog"),
        ("routing", "view_route"),
        ("routing", "view_knowledgeentry"),
    }
    assert ("config", "change_systemconfig") in perms["operator"]
    assert ("routing", "change_route") in perms["operator"]
    assert ("routing", "delete_route") not in perms["operator"]
    assert ("requestlogs", "change_requestlog") not in perms["operator"]
    assert ("requestlogs", "delete_requestlog") in perms["admin"]
    assert ("auth", "add_user") in perms["admin"]
    assert ("knox", "delete_authtoken") in perms["admin"]
    assert not any(app == "authtoken" for app, _ in perms["admin"])
    assert ("auth", "delete_user") not in perms["admin"]


def test_operator_edits_routes_but_not_request_logs(client, django_capture_on_commit_callbacks):
    route = RouteFactory()
    log = RequestLogFactory(status=RequestStatus.OK)
    client.force_login(UserFactory(is_staff=True, groups=["operator"]))

    page = client.get(route_url(route))
    assert page.status_code == 200
    assert 'name="_save"' in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        saved = client.post(route_url(route), changeform_data(page, instructions="Be brief."))
    assert saved.status_code == 302
    route.refresh_from_db()
    assert route.instructions == "Be brief."

    assert client.get(LOGS).status_code == 200
    detail = client.get(log_url(log))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert client.post(log_url(log), {"status": "error"}).status_code == 403
    delete = reverse("admin:requestlogs_requestlog_delete", args=[log.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    log.refresh_from_db()
    assert log.status == RequestStatus.OK


def test_support_reads_logs_and_routes_but_cannot_save_a_route(client):
    route = RouteFactory(instructions="Original instructions.")
    log = RequestLogFactory()
    client.force_login(UserFactory(is_staff=True, groups=["support"]))

    assert shown(client) == [log]
    assert client.get(log_url(log)).status_code == 200
    assert client.get(ROUTES).status_code == 200
    page = client.get(route_url(route))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert client.post(route_url(route), {"instructions": "Changed"}).status_code == 403
    route.refresh_from_db()
    assert route.instructions == "Original instructions."
    assert client.get(reverse("admin:config_systemconfig_changelist")).status_code == 403
    # Relabelling writes to a route, so support is not offered it (nor any other action).
    assert client.get(LOGS).context["action_form"] is None


def test_admin_role_manages_users_and_tokens_but_is_not_superuser(client):
    client.force_login(UserFactory(is_staff=True, groups=["admin"]))

    assert client.get(reverse("admin:auth_user_changelist")).status_code == 200
    assert client.get(reverse("admin:auth_user_add")).status_code == 200
    assert client.get(reverse("admin:knox_authtoken_changelist")).status_code == 200
    assert client.get(ROUTES).status_code == 200
    assert client.get(reverse("admin:config_systemconfig_changelist")).status_code == 302


def test_unfiltered_list_is_not_counted_row_by_row_on_postgresql(
    admin_client_, monkeypatch, django_assert_max_num_queries
):
    if connection.vendor != "postgresql":
        pytest.skip("the planner's row estimate is a PostgreSQL feature")
    RequestLogFactory.create_batch(3)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE requestlogs_requestlog")
    # Pretend the table is big: the estimate is used from any size.
    monkeypatch.setattr("requestlogs.admin.ESTIMATE_COUNT_FROM_ROWS", 0)

    with django_assert_max_num_queries(50) as unfiltered:
        assert admin_client_.get(LOGS).status_code == 200
    with django_assert_max_num_queries(50) as filtered:
        assert shown(admin_client_, status__exact="ok")

    def counts(queries) -> list[str]:
        return [q["sql"] for q in queries if "COUNT(" in q["sql"] and "requestlog" in q["sql"]]

    assert counts(unfiltered.captured_queries) == []
    assert len(counts(filtered.captured_queries)) == 1
