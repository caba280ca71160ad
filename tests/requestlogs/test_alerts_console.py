"""What the console says about a Slack alert comes from the alert's recorded state, and follows
it: queued, then sent (with the time), or "call the manager now" when there is no channel.

Playwright driving Debian's Chromium against the live server (the fixtures of
test_console_browser.py).
"""

import re

import pytest

from config.services import system_config_update
from requestlogs.models import Alert, AlertState
from tests.requestlogs.test_alerts import run_due_tasks
from tests.requestlogs.test_console_browser import (  # noqa: F401 - fixtures
    _orm_beside_playwright,
    browser,
    console_server,
    default_routes,
    desk_user,
    new_page,
    page,
    pytestmark,
)

EMERGENCY = "Smoke coming out of the projector in bay 2"


def signed_in(request: pytest.FixtureRequest):
    """The console page, signed in (``page`` of test_console_browser.py)."""
    return request.getfixturevalue("page")


def emergency(tab) -> None:
    from playwright.sync_api import expect

    tab.get_by_label("Describe the request").fill(EMERGENCY)
    tab.keyboard.press("Control+Enter")
    expect(tab.locator("#route-badge")).to_have_text("Emergency")
    expect(tab.locator("#status-pill")).to_have_text(re.compile("OK|Timeout|Error"))


@pytest.fixture
def no_webhook(settings):
    settings.SLACK_WEBHOOK_URL = ""
    system_config_update(slack_webhook_url="")


def test_no_channel_tells_the_desk_to_call_the_manager(request, no_webhook):
    from playwright.sync_api import expect

    tab = signed_in(request)
    emergency(tab)

    status = tab.locator("#alert-status")
    expect(status).to_have_text("No alert channel is configured: call the manager now")
    expect(tab.locator("#emergency-banner")).not_to_contain_text("has been alerted")


def test_a_queued_alert_turns_into_sent_with_its_time(request, slack_server):
    from playwright.sync_api import expect

    system_config_update(slack_webhook_url=slack_server.url)
    tab = signed_in(request)
    emergency(tab)
    status = tab.locator("#alert-status")
    expect(status).to_have_text("Alert queued - sending to Slack…")

    run_due_tasks()  # the worker sends it; the console is following the request

    expect(status).to_have_text(re.compile(r"^Manager alerted on Slack at \d{1,2}:\d{2}"))
    assert Alert.objects.get().state == AlertState.SENT


def test_escalating_says_what_happened_to_the_alert(request, no_webhook):
    from playwright.sync_api import expect

    tab = signed_in(request)
    tab.get_by_label("Route", exact=True).select_option(label="TechSupport")
    tab.get_by_label("Describe the request").fill("Projector in bay 3 shows no picture")
    tab.get_by_role("button", name="Send request").click()
    expect(tab.locator("#status-pill")).to_have_text(re.compile("OK|Cached"))
    expect(tab.locator("#alert-status")).to_be_hidden()

    tab.get_by_role("button", name="Escalate").click()

    expect(tab.locator("#action-status")).to_contain_text("Escalated")
    expect(tab.locator("#action-status")).not_to_contain_text("has been alerted")
    expect(tab.locator("#alert-status")).to_have_text(
        "No alert channel is configured: call the manager now"
    )
