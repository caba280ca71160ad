"""The console's one-tap "This is an emergency" switch, in a real browser."""

import importlib
import re

import pytest
from django.apps import apps as django_apps

from requestlogs.models import RequestLog
from routing.services import route_catalog_invalidate
from tests.requestlogs.test_console_browser import (  # noqa: F401  (fixtures)
    _orm_beside_playwright,
    browser,
    console_server,
    default_routes,
    desk_user,
    new_page,
    page,
    pytestmark,
)
from tests.routing.test_safety import DOUBTED


@pytest.fixture
def taxonomy_routes(default_routes):  # noqa: F811
    """The default routes with the safety taxonomy and the learned sets merged, as the
    migrations leave them (a transactional test elsewhere may have flushed them)."""
    training = importlib.import_module("routing.migrations.0005_safety_taxonomy_update")
    training.merge_taxonomy_and_training_lines(django_apps, None)
    learned = importlib.import_module("routing.migrations.0009_learned_from_measured_sets")
    learned.merge_learned_lines(django_apps, None)
    route_catalog_invalidate()
    return default_routes


def test_a_doubted_answer_offers_a_one_tap_switch_that_resends_it_as_an_emergency(
    taxonomy_routes,
    page,  # noqa: F811
):
    from playwright.sync_api import expect

    page.get_by_label("Location").fill("Halifax")
    page.get_by_label("Describe the request").fill(DOUBTED)
    page.keyboard.press("Control+Enter")

    switch = page.get_by_role("button", name="This is an emergency")
    expect(page.locator("#status-pill")).to_have_text(re.compile("OK|Cached"))
    expect(page.locator("#route-badge")).not_to_have_text("Emergency")
    expect(switch).to_be_visible()
    expect(page.locator("#emergency-banner")).to_be_hidden()

    switch.click()

    expect(page.locator("#route-badge")).to_have_text("Emergency")
    expect(page.locator("#emergency-banner")).to_be_visible()
    expect(page.locator("#route-how")).to_have_text("You chose")
    expect(switch).to_be_hidden()
    expect(page.locator("#status-pill")).to_have_text(re.compile("OK|Timeout|Error"))
    # The person's own choice of route is back in the form for the next request.
    expect(page.get_by_label("Route", exact=True)).to_have_value("auto")

    first, second = RequestLog.objects.select_related("route").order_by("created_at")
    assert (first.text, first.possible_emergency) == (DOUBTED, True)
    assert first.route.slug != "emergency"
    assert (second.text, second.location) == (DOUBTED, "Halifax")
    assert (second.route.slug, second.routing_source) == ("emergency", "manual")
    assert second.requested_route == "emergency"
    assert second.alerts.filter(kind="emergency").exists()


def test_a_clear_answer_has_no_switch(taxonomy_routes, page):  # noqa: F811
    from playwright.sync_api import expect

    page.get_by_label("Describe the request").fill("TrackMan frozen in bay 3")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status-pill")).to_have_text(re.compile("OK|Cached"))
    expect(page.get_by_role("button", name="This is an emergency")).to_be_hidden()
