"""Routes and knowledge in the admin: edits reach the request path at once, defaults stay put."""

import pytest
from django.urls import reverse

from config.services import system_config_update
from routing.models import KnowledgeEntry, Route
from routing.selectors import route_catalog_get
from tests.admin_forms import changeform_data
from tests.requestlogs.factories import UserFactory
from tests.routing.factories import EmergencyRouteFactory, KnowledgeEntryFactory, RouteFactory

pytestmark = pytest.mark.django_db

ROUTES = reverse("admin:routing_route_changelist")
ENTRIES = reverse("admin:routing_knowledgeentry_changelist")


def change_url(route: Route) -> str:
    return reverse("admin:routing_route_change", args=[route.pk])


def delete_url(route: Route) -> str:
    return reverse("admin:routing_route_delete", args=[route.pk])


def default_route(slug: str) -> Route:
    # The default routes may come from a data migration; don't depend on it.
    return Route.objects.filter(slug=slug).first() or RouteFactory(slug=slug, name=slug.title())


@pytest.fixture
def admin_client_(client):
    client.force_login(UserFactory(superuser=True))
    return client


def post_change(client, route: Route, captured, **changes):
    """Submit the route's change form as a browser would, committing on-commit work."""
    page = client.get(change_url(route))
    assert page.status_code == 200
    with captured(execute=True):
        response = client.post(change_url(route), changeform_data(page, **changes))
    assert response.status_code == 302, response.context and response.context["errors"]
    return response


# --- The list ---------------------------------------------------------------------------


def test_changelist_shows_routes_with_their_example_count(admin_client_):
    route = RouteFactory(name="Events & Parties", model="gpt-4.1")

    response = admin_client_.get(ROUTES)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Events &amp; Parties" in page
    assert '<td class="field-utterance_count">3</td>' in page
    assert route in response.context["cl"].result_list


def test_search_finds_a_route_by_its_example_utterances(admin_client_):
    events = RouteFactory()
    other = RouteFactory(utterances="The projector in bay 4 is blank")

    found = admin_client_.get(ROUTES, {"q": "birthday party"}).context["cl"].result_list

    assert events in found
    assert other not in found


@pytest.mark.parametrize(
    ("params", "expect_emergency"),
    [({"is_emergency__exact": "1"}, True), ({"is_emergency__exact": "0"}, False)],
)
def test_filters_narrow_the_list(admin_client_, params, expect_emergency):
    plain = RouteFactory()
    emergency = EmergencyRouteFactory()

    found = set(admin_client_.get(ROUTES, params).context["cl"].result_list)

    assert (emergency in found) is expect_emergency
    assert (plain in found) is not expect_emergency


def test_disabled_and_backend_filters_render(admin_client_):
    off = RouteFactory(enabled=False, backend="offline")

    response = admin_client_.get(ROUTES, {"enabled__exact": "0", "backend__exact": "offline"})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [off]


# --- Editing ----------------------------------------------------------------------------


def test_change_form_is_grouped_and_version_is_read_only(admin_client_):
    route = RouteFactory()

    page = admin_client_.get(change_url(route)).content.decode()

    for heading in ("Identity", "Scope", "Assistant", "Routing", "Emergency"):
        assert f">{heading}<" in page
    assert 'name="version"' not in page
    assert "Bumped when instructions, model or backend change." in page


def test_editing_instructions_bumps_version_and_reaches_the_catalog(
    admin_client_, django_capture_on_commit_callbacks
):
    route = RouteFactory()
    assert route_catalog_get().get(route.slug).version == 1  # warm cache

    post_change(
        admin_client_,
        route,
        django_capture_on_commit_callbacks,
        instructions="Quote the party packages by name and offer the deposit terms first.",
    )

    route.refresh_from_db()
    assert route.version == 2
    live = route_catalog_get().get(route.slug)
    assert live.instructions.startswith("Quote the party packages")
    assert live.version == 2


def test_editing_routing_fields_keeps_the_version(
    admin_client_, django_capture_on_commit_callbacks
):
    route = RouteFactory(priority=100)
    route_catalog_get()

    post_change(
        admin_client_,
        route,
        django_capture_on_commit_callbacks,
        priority="20",
        keywords="birthday\nteam outing",
    )

    route.refresh_from_db()
    assert route.version == 1
    live = route_catalog_get().get(route.slug)
    assert live.priority == 20
    assert live.keywords == ("birthday", "team outing")


def test_invalid_timeout_is_refused(admin_client_):
    route = RouteFactory()
    page = admin_client_.get(change_url(route))

    response = admin_client_.post(change_url(route), changeform_data(page, timeout_s="0.1"))

    assert response.status_code == 200
    assert "greater than or equal to 1" in response.content.decode()
    route.refresh_from_db()
    assert route.timeout_s is None


def test_list_editable_disable_reaches_the_catalog(
    admin_client_, django_capture_on_commit_callbacks
):
    route = RouteFactory()
    assert route_catalog_get().get(route.slug).enabled

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            ROUTES,
            {
                "form-TOTAL_FORMS": "1",
                "form-INITIAL_FORMS": "1",
                "form-MIN_NUM_FORMS": "0",
                "form-MAX_NUM_FORMS": "1000",
                "form-0-id": str(route.pk),
                # "form-0-enabled" absent: the box was unticked.
                "_save": "Save",
            },
        )

    assert response.status_code == 302
    route.refresh_from_db()
    assert route.enabled is False
    assert route.version == 1
    assert route_catalog_get().get(route.slug).enabled is False


# --- Knowledge inline -------------------------------------------------------------------


def test_adding_knowledge_inline_reaches_the_catalog(
    admin_client_, django_capture_on_commit_callbacks
):
    route = RouteFactory()
    route_catalog_get()
    page = admin_client_.get(change_url(route))
    data = changeform_data(page)
    prefix = page.context["inline_admin_formsets"][0].formset.prefix
    data.update(
        {
            f"{prefix}-TOTAL_FORMS": "1",
            f"{prefix}-0-title": "Cancelling a party",
            f"{prefix}-0-body": "Refund the deposit in full up to 7 days before the event.",
            f"{prefix}-0-keywords": "cancel\nrefund",
            f"{prefix}-0-enabled": "on",
            f"{prefix}-0-route": str(route.pk),
        }
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(change_url(route), data)

    assert response.status_code == 302
    assert route.knowledge.get().title == "Cancelling a party"
    live = route_catalog_get().get(route.slug)
    assert [k.title for k in live.knowledge] == ["Cancelling a party"]
    assert live.version == 2  # the offline backend's answers changed


def test_deleting_knowledge_inline_reaches_the_catalog(
    admin_client_, django_capture_on_commit_callbacks
):
    entry = KnowledgeEntryFactory()
    route = entry.route
    assert route_catalog_get().get(route.slug).knowledge
    page = admin_client_.get(change_url(route))
    prefix = page.context["inline_admin_formsets"][0].formset.prefix

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            change_url(route), changeform_data(page, **{f"{prefix}-0-DELETE": True})
        )

    assert response.status_code == 302
    assert not KnowledgeEntry.objects.filter(pk=entry.pk).exists()
    assert route_catalog_get().get(route.slug).knowledge == ()


# --- Deleting: the defaults stay, others prefer disabling -------------------------------


@pytest.mark.parametrize("slug", ["emergency", "booking", "tech", "brand"])
def test_default_routes_cannot_be_deleted_or_renamed(admin_client_, slug):
    route = default_route(slug)

    assert admin_client_.get(delete_url(route)).status_code == 403
    assert admin_client_.post(delete_url(route), {"post": "yes"}).status_code == 403
    page = admin_client_.get(change_url(route))
    assert "deletelink" not in page.content.decode()
    admin_client_.post(change_url(route), changeform_data(page, slug=f"{slug}-renamed"))
    assert Route.objects.filter(slug=slug).exists()


def test_the_configured_fallback_route_cannot_be_deleted(
    admin_client_, django_capture_on_commit_callbacks
):
    route = RouteFactory()
    with django_capture_on_commit_callbacks(execute=True):
        system_config_update(default_route_slug=route.slug)

    assert admin_client_.get(delete_url(route)).status_code == 403


def test_other_routes_can_be_deleted_and_leave_the_catalog(
    admin_client_, django_capture_on_commit_callbacks
):
    route = RouteFactory()
    assert route_catalog_get().get(route.slug) is not None

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(delete_url(route), {"post": "yes"})

    assert response.status_code == 302
    assert not Route.objects.filter(pk=route.pk).exists()
    assert route_catalog_get().get(route.slug) is None


def test_bulk_delete_is_not_offered_but_disabling_is(
    admin_client_, django_capture_on_commit_callbacks
):
    tech = default_route("tech")
    events = RouteFactory()
    route_catalog_get()

    actions = dict(admin_client_.get(ROUTES).context["action_form"].fields["action"].choices)
    assert "delete_selected" not in actions
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            ROUTES,
            {"action": "disable_routes", "_selected_action": [tech.pk, events.pk]},
        )

    assert response.status_code == 302
    catalog = route_catalog_get()
    assert catalog.get("tech").enabled is False
    assert catalog.get(events.slug).enabled is False
    assert Route.objects.filter(pk__in=[tech.pk, events.pk]).count() == 2


# --- Knowledge entries on their own -------------------------------------------------------


def test_knowledge_changelist_filters_and_searches(admin_client_):
    deposit = KnowledgeEntryFactory(title="Party deposit")
    other = KnowledgeEntryFactory(
        title="Reset the TrackMan", body="Press the recessed reset pin behind the unit."
    )

    response = admin_client_.get(ENTRIES, {"q": "recessed reset pin"})
    assert list(response.context["cl"].result_list) == [other]
    response = admin_client_.get(ENTRIES, {"route__id__exact": deposit.route_id})
    assert list(response.context["cl"].result_list) == [deposit]
    response = admin_client_.get(ENTRIES, {"enabled__exact": "1"})
    assert response.status_code == 200


def test_knowledge_added_on_its_own_bumps_its_route(
    admin_client_, django_capture_on_commit_callbacks
):
    route = RouteFactory()
    route_catalog_get()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            reverse("admin:routing_knowledgeentry_add"),
            {
                "route": route.pk,
                "title": "Late arrivals",
                "body": "Hold the bay for 15 minutes, then release it.",
                "keywords": "late",
                "enabled": "on",
                "_save": "Save",
            },
        )

    assert response.status_code == 302
    live = route_catalog_get().get(route.slug)
    assert live.version == 2
    assert [k.title for k in live.knowledge] == ["Late arrivals"]


def test_knowledge_deleted_on_its_own_leaves_the_catalog(
    admin_client_, django_capture_on_commit_callbacks
):
    entry = KnowledgeEntryFactory()
    assert route_catalog_get().get(entry.route.slug).knowledge

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            reverse("admin:routing_knowledgeentry_delete", args=[entry.pk]), {"post": "yes"}
        )

    assert response.status_code == 302
    assert route_catalog_get().get(entry.route.slug).knowledge == ()
