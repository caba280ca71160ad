"""Routes' and knowledge entries' audit trail: each change made in the admin records who made
it and each field's old and new value; changes made by code are marked as the system's.
"""

import pytest
from django.urls import reverse

from config.audit import AUDIT_ADMIN, AUDIT_BASELINE, AUDIT_SYSTEM
from routing.models import KnowledgeEntry, Route
from routing.services import knowledge_entry_save, route_update
from tests.admin_forms import changeform_data
from tests.requestlogs.factories import RequestLogFactory, UserFactory
from tests.routing.factories import KnowledgeEntryFactory, RouteFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator():
    return UserFactory(username="jordan.ops", is_staff=True, groups=["operator"])


def change_url(route: Route) -> str:
    return reverse("admin:routing_route_change", args=[route.pk])


def post_change(client, route: Route, captured, **changes) -> None:
    page = client.get(change_url(route))
    with captured(execute=True):
        response = client.post(change_url(route), changeform_data(page, **changes))
    assert response.status_code == 302, response.context and response.context["errors"]


def changes_of(record) -> dict[str, tuple[object, object]]:
    delta = record.diff_against(record.prev_record)
    return {change.field: (change.old, change.new) for change in delta.changes}


def test_an_admin_edit_of_a_route_records_who_and_old_to_new_values(
    client, operator, django_capture_on_commit_callbacks
):
    route = RouteFactory(model="")
    client.force_login(operator)

    post_change(client, route, django_capture_on_commit_callbacks, model="gpt-4.1", priority="50")

    record = route.history.latest()
    assert (record.history_user, record.history_change_reason) == (operator, AUDIT_ADMIN)
    assert changes_of(record) == {"model": ("", "gpt-4.1"), "priority": (100, 50)}
    # The version moves with the model (answers change), recorded as a number.
    assert (record.prev_record.version, record.version) == (1, 2)


def test_a_knowledge_entry_edited_on_its_routes_page_records_the_admin(
    client, operator, django_capture_on_commit_callbacks
):
    entry = KnowledgeEntryFactory(title="Deposit")
    client.force_login(operator)

    post_change(
        client,
        entry.route,
        django_capture_on_commit_callbacks,
        **{"knowledge-0-title": "Deposit and refunds"},
    )

    record = entry.history.latest()
    assert (record.history_user, record.history_change_reason) == (operator, AUDIT_ADMIN)
    assert changes_of(record) == {"title": ("Deposit", "Deposit and refunds")}


def test_disabling_routes_from_the_list_records_the_admin(client, operator):
    route = RouteFactory()
    client.force_login(operator)

    client.post(
        reverse("admin:routing_route_changelist"),
        {"action": "disable_routes", "_selected_action": [route.pk]},
    )

    record = route.history.latest()
    assert record.history_user == operator
    assert changes_of(record) == {"enabled": (True, False)}


def test_a_route_deleted_in_the_admin_leaves_its_last_values_and_its_entries(
    client, django_capture_on_commit_callbacks
):
    admin = UserFactory(superuser=True)
    entry = KnowledgeEntryFactory()
    route = entry.route
    client.force_login(admin)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:routing_route_delete", args=[route.pk]), {"post": "yes"})

    assert not Route.objects.filter(pk=route.pk).exists()
    gone = Route.history.filter(id=route.pk).latest()
    assert (gone.history_type, gone.history_user, gone.slug) == ("-", admin, route.slug)
    entry_gone = KnowledgeEntry.history.filter(id=entry.pk).latest()
    assert (entry_gone.history_type, entry_gone.history_user) == ("-", admin)


def test_a_change_made_by_code_is_marked_as_the_systems(operator):
    route = RouteFactory()

    route_update(route=route, instructions="Answer in two lines.")

    record = route.history.latest()
    assert (record.history_user, record.history_change_reason) == (None, AUDIT_SYSTEM)
    created = record.prev_record  # by the factory: no service, no actor
    assert (created.history_type, created.history_change_reason) == ("+", AUDIT_SYSTEM)
    assert changes_of(record) == {
        "instructions": (RouteFactory.instructions, "Answer in two lines.")
    }
    assert record.version == 2


def test_a_route_without_history_gets_its_old_values_recorded_before_its_first_change():
    route = RouteFactory(priority=100)
    Route.history.filter(id=route.pk).delete()  # as a route from before the audit began

    route_update(route=route, priority=10)

    baseline, change = Route.history.filter(id=route.pk).order_by("history_id")
    assert baseline.history_change_reason == AUDIT_BASELINE
    assert changes_of(change) == {"priority": (100, 10)}


def test_a_route_saved_from_a_stale_copy_keeps_a_version_bumped_meanwhile():
    route = RouteFactory()
    stale = Route.objects.get(pk=route.pk)
    knowledge_entry_save(entry=KnowledgeEntryFactory.build(route=route))  # version 1 -> 2

    route_update(route=stale, enabled=False)  # answers unchanged: no bump of its own

    route.refresh_from_db()
    assert (route.version, route.enabled) == (2, False)
    assert route.history.latest().version == 2


def test_relabelling_a_request_in_the_admin_records_who_taught_the_route(client):
    admin = UserFactory(superuser=True)
    log = RequestLogFactory(text="Can I get the wifi password for bay 4?")
    target = RouteFactory()
    client.force_login(admin)

    client.post(
        reverse("admin:requestlogs_requestlog_changelist"),
        {"action": "relabel", "_selected_action": [log.pk], "apply": "1", "route": target.pk},
    )

    record = target.history.latest()
    assert record.history_user == admin
    assert record.history_change_reason == "admin: re-labelled request"
    assert "wifi password for bay 4" in changes_of(record)["utterances"][1]


def test_the_route_history_page_shows_each_change(
    client, operator, django_capture_on_commit_callbacks
):
    route = RouteFactory(name="Events")
    client.force_login(operator)
    post_change(client, route, django_capture_on_commit_callbacks, name="Events & Parties")

    response = client.get(reverse("admin:routing_route_history", args=[route.pk]))

    assert response.status_code == 200
    newest = response.context["page_obj"][0]
    assert newest.history_delta_changes == [
        {"field": "Name", "old": "Events", "new": "Events &amp; Parties"}
    ]
    page = response.content.decode()
    assert "jordan.ops" in page
    assert '<th scope="col">version</th>' in page


def test_the_routes_change_log_lists_changes_across_routes(client, operator):
    first, second = RouteFactory(), RouteFactory()
    client.force_login(operator)
    route_update(route=first, actor=operator, via=AUDIT_ADMIN, priority=5)
    route_update(route=second, enabled=False)

    response = client.get(reverse("admin:routing_historicalroute_changelist"), {"q": "jordan"})

    assert response.status_code == 200
    assert [(r.id, r.history_user) for r in response.context["cl"].result_list] == [
        (first.pk, operator)
    ]
