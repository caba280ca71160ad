"""The console's rough edges, found by trying it (issue 14), each fixed and shown in a real
browser: Playwright driving Debian's Chromium against the live server (the fixtures of
test_console_browser.py; any script error or CSP violation fails a test).
"""

import re
from datetime import UTC, datetime

import pytest

from config.services import system_config_update
from requestlogs.models import Alert, AlertKind, AlertState, Channel, RequestLog, RequestStatus
from routing.models import Route
from tests.requestlogs.factories import AlertFactory, RequestLogFactory
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

NO_CHANNEL = "No alert channel is configured: call the manager now"
ANSWER = "1. Restart the TrackMan app.\n2. Power-cycle the unit behind the screen."


@pytest.fixture
def tab(request: pytest.FixtureRequest):
    """The console page, signed in (``page`` of test_console_browser.py)."""
    return request.getfixturevalue("page")


@pytest.fixture
def person(request: pytest.FixtureRequest):
    """The desk user the console is signed in as."""
    return request.getfixturevalue("desk_user")


@pytest.fixture
def no_webhook(settings):
    settings.SLACK_WEBHOOK_URL = ""
    system_config_update(slack_webhook_url="")


def history_item(tab, log: RequestLog):
    """A history item, opened (its actions are in its details)."""
    item = tab.locator(f'#history > li[data-id="{log.pk}"]')
    item.locator("summary").click()
    return item


# --- What the console says about a manager being alerted -------------------------------


def test_history_after_a_reload_says_each_alerts_real_state_in_the_venues_time(
    tab, person, settings
):
    """Sent (with the venue's wall-clock time, whatever the browser's zone), queued, failed,
    no channel: each history item says what its alert's row says."""
    from playwright.sync_api import expect

    settings.TIME_ZONE = "America/Halifax"  # the venue; the browser runs in UTC
    sent_at = datetime(2026, 12, 5, 18, 2, tzinfo=UTC)  # 14:02 in Halifax
    states = {
        AlertState.SENT: "Manager alerted on Slack at 14:02",
        AlertState.QUEUED: "Alert queued - sending to Slack…",
        AlertState.FAILED: "Slack alert failed: call the manager now",
        AlertState.NO_CHANNEL: NO_CHANNEL,
    }
    logs = {}
    for state in states:
        log = RequestLogFactory(user=person, route=Route.objects.get(slug="emergency"))
        AlertFactory(
            request=log,
            kind=AlertKind.EMERGENCY,
            state=state,
            sent_at=sent_at if state == AlertState.SENT else None,
        )
        logs[state] = log
    tab.reload()

    for state, wording in states.items():
        item = history_item(tab, logs[state])
        expect(item.locator("[data-alert]")).to_have_text(wording)
    assert "has been alerted" not in tab.locator("#history").inner_text()


def test_an_assistant_failure_says_what_happened_to_the_alert(tab, no_webhook, openai_upstream):
    """The error fallback: the answer and the alert line both say there is no channel."""
    from playwright.sync_api import expect

    openai_upstream.configure(fail="500")
    tab.get_by_label("Route", exact=True).select_option(label="TechSupport")
    tab.get_by_label("Describe the request").fill("Projector in bay 3 shows no picture")
    tab.keyboard.press("Control+Enter")

    expect(tab.locator("#status-pill")).to_have_text("Error")
    expect(tab.locator("#alert-status")).to_have_text(NO_CHANNEL)
    expect(tab.locator("#answer")).to_contain_text(f"{NO_CHANNEL}.")
    expect(tab.locator("#result")).not_to_contain_text("has been alerted")
    assert Alert.objects.get().kind == AlertKind.FAILURE


def test_an_emergency_alert_slack_refuses_ends_in_call_the_manager_now(tab, slack_server, settings):
    from playwright.sync_api import expect

    settings.SLACK_ALERT_RETRY_DELAYS_S = [0, 0, 0, 0]
    slack_server.mode = "error"
    system_config_update(slack_webhook_url=slack_server.url)
    tab.get_by_label("Describe the request").fill("Smoke coming out of the projector in bay 2")
    tab.keyboard.press("Control+Enter")
    status = tab.locator("#alert-status")
    expect(status).to_have_text("Alert queued - sending to Slack…")

    while run_due_tasks():  # every try, as the worker would make them
        pass

    assert Alert.objects.get().state == AlertState.FAILED
    expect(status).to_have_text("Slack alert failed: call the manager now")
    expect(tab.locator("#emergency-banner")).not_to_contain_text("alerted")


# --- The form -----------------------------------------------------------------------------


def test_the_location_starts_empty_and_is_never_carried_into_the_next_request(tab, person):
    from playwright.sync_api import expect

    RequestLogFactory(user=person, channel=Channel.API, location="Halifax")
    tab.reload()
    location = tab.get_by_label("Location")
    expect(location).to_have_value("")  # not the last one used, from any channel
    expect(location).to_have_attribute("placeholder", "e.g. Bedford, bay 3")
    expect(tab.locator("#location-hint")).to_contain_text("for this request only")
    expect(tab.locator('#location-options option[value="Halifax"]')).to_have_count(1)

    location.fill("Truro, bay 2")
    tab.get_by_label("Describe the request").fill("Projector in bay 2 shows no image")
    tab.keyboard.press("Control+Enter")
    expect(tab.locator("#status-pill")).to_have_text(re.compile("OK|Cached"))
    expect(location).to_have_value("")

    tab.get_by_label("Describe the request").fill("TrackMan frozen in bay 3")
    tab.keyboard.press("Control+Enter")
    expect(tab.locator("#history > li")).to_have_count(3)
    expect(tab.locator("#status-pill")).to_have_text(re.compile("OK|Cached"))
    first, second = RequestLog.objects.filter(channel=Channel.WEB).order_by("created_at")
    assert (first.location, second.location) == ("Truro, bay 2", "")


def test_an_over_long_paste_is_kept_whole_and_refused_with_a_message(tab):
    from playwright.sync_api import expect

    calls: list[str] = []
    tab.on("request", lambda r: calls.append(r.url) if "/api/" in r.url else None)
    text = tab.get_by_label("Describe the request")
    text.fill("x" * 4500)  # a paste: no maxlength cuts it

    expect(tab.locator("#text-counter")).to_have_class(re.compile("counter--over"))
    expect(tab.locator("#text-error")).to_have_text(
        "Too long: 4,500 characters, 500 over the 4,000 limit. Nothing was cut; "
        "shorten it before sending."
    )
    tab.get_by_role("button", name="Send request").click()
    expect(text).to_have_attribute("aria-invalid", "true")
    assert len(text.input_value()) == 4500
    assert calls == []

    text.fill("x" * 4000)  # shortened to the limit: the message goes
    expect(tab.locator("#text-error")).to_be_hidden()
    expect(text).not_to_have_attribute("aria-invalid", "true")


def test_the_answer_card_shows_an_excerpt_of_the_request(tab):
    from playwright.sync_api import expect

    long_text = "TrackMan frozen in bay 3 after the software update. " * 12
    tab.get_by_label("Route", exact=True).select_option(label="TechSupport")
    tab.get_by_label("Describe the request").fill(long_text)
    tab.keyboard.press("Control+Enter")
    expect(tab.locator("#status-pill")).to_have_text(re.compile("OK|Cached"))

    shown = tab.locator("#result-request")
    assert len(shown.inner_text()) <= 140
    expect(shown).to_have_text(re.compile(r"^TrackMan frozen in bay 3 after .*…$"))
    expect(shown).to_have_attribute("title", long_text.strip())


# --- Routes ---------------------------------------------------------------------------------


def test_a_hand_chosen_route_the_classifier_disagrees_with_offers_a_switch(tab, no_webhook):
    from playwright.sync_api import expect

    tab.get_by_label("Route", exact=True).select_option(label="Emergency")
    tab.get_by_label("Describe the request").fill("TrackMan frozen in bay 3")
    tab.keyboard.press("Control+Enter")

    hint = tab.locator("#route-hint")
    expect(hint).to_contain_text("This looks like TechSupport. Switch?")
    expect(tab.locator("#route-badge")).to_have_text("Emergency")  # the person's choice
    expect(tab.locator("#status-pill")).to_have_text(re.compile("OK|Cached|Timeout|Error"))

    tab.get_by_role("button", name="Ask TechSupport instead").click()
    expect(tab.locator("#route-badge")).to_have_text("TechSupport")
    expect(tab.locator("#route-how")).to_have_text("You chose")
    expect(tab.locator("#status-pill")).to_have_text(re.compile("OK|Cached"))
    expect(hint).to_be_hidden()
    first, second = RequestLog.objects.order_by("created_at").select_related("route")
    assert (first.route.slug, second.route.slug) == ("emergency", "tech")
    assert first.text == second.text == "TrackMan frozen in bay 3"


# --- History and the answer's actions -------------------------------------------------------


def test_history_items_loaded_with_the_page_take_feedback_escalation_and_copy(
    tab, person, no_webhook
):
    from playwright.sync_api import expect

    tab.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log = RequestLogFactory(user=person, answer=ANSWER, text="TrackMan frozen in bay 3")
    tab.reload()
    item = history_item(tab, log)

    item.get_by_role("button", name="Not helpful").click()
    comment = item.get_by_label("Why was it not helpful?")
    expect(comment).to_be_focused()
    comment.fill("Steps were for the old TrackMan")
    item.get_by_role("button", name="Send feedback").click()
    expect(item.locator("[data-status]")).to_have_text(
        "Thanks, feedback recorded. The team will review this answer."
    )
    expect(comment).to_be_hidden()
    item.get_by_role("button", name="Escalate").click()
    expect(item.locator(".status")).to_have_text("Escalated")
    expect(item.locator("[data-alert]")).to_have_text(NO_CHANNEL)
    expect(item.get_by_role("button", name="Escalated")).to_be_disabled()
    item.get_by_role("button", name="Copy answer").click()
    expect(item.locator("[data-status]")).to_have_text("Answer copied.")
    assert tab.evaluate("navigator.clipboard.readText()") == ANSWER

    log.refresh_from_db()
    assert (log.feedback_helpful, log.feedback_comment) == (
        False,
        "Steps were for the old TrackMan",
    )
    assert log.escalated and log.status == RequestStatus.ESCALATED
    tab.reload()  # and after another reload, it says so
    item = history_item(tab, log)
    expect(item.get_by_role("button", name="Escalated")).to_be_disabled()
    expect(item.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "true")


def test_copy_answer_copies_what_the_assistant_wrote(tab):
    from playwright.sync_api import expect

    tab.context.grant_permissions(["clipboard-read", "clipboard-write"])
    tab.get_by_label("Route", exact=True).select_option(label="TechSupport")
    tab.get_by_label("Describe the request").fill("TrackMan frozen in bay 3")
    tab.keyboard.press("Control+Enter")
    expect(tab.locator("#status-pill")).to_have_text(re.compile("OK|Cached"))

    tab.locator("#actions").get_by_role("button", name="Copy answer").click()
    expect(tab.locator("#action-status")).to_have_text("Answer copied.")
    assert tab.evaluate("navigator.clipboard.readText()") == RequestLog.objects.get().answer


def test_stop_ends_a_streaming_answer_and_shows_the_status_the_request_got(tab, openai_upstream):
    from playwright.sync_api import expect

    openai_upstream.configure(ttft_s=0.2, latency_s=20.0)  # an answer that takes its time
    tab.get_by_label("Route", exact=True).select_option(label="TechSupport")
    tab.get_by_label("Describe the request").fill("TrackMan frozen in bay 3")
    tab.keyboard.press("Control+Enter")
    expect(tab.locator("#answer")).to_have_text(re.compile(r"\w{3,}"))

    tab.get_by_role("button", name="Stop").click()

    expect(tab.locator("#status-pill")).to_have_text("Abandoned")
    expect(tab.locator("#result-error")).to_contain_text("Stopped.")
    expect(tab.get_by_role("button", name="Stop")).to_be_hidden()
    expect(tab.locator("#history > li").first.locator(".status")).to_have_text("Abandoned")
    log = RequestLog.objects.get()
    assert log.status == RequestStatus.ABANDONED
    assert log.answer.strip()  # what was shown is kept
