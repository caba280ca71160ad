"""The console in a real browser: Playwright driving Debian's Chromium against the live server.

Never downloads a browser (no ``playwright install``): it uses the system ``chromium`` and
is skipped, with the reason, only when that is not installed.
"""

import importlib
import json
import re
import shutil
from collections.abc import Iterator

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.test import Client

from requestlogs.models import Channel, RequestLog, RequestStatus
from routing.models import Route
from routing.services import route_catalog_invalidate
from tests.requestlogs.factories import PASSWORD, UserFactory

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (apt-get install -y chromium); "
        "these tests never download a browser",
    ),
    # The live server answers from another thread, so the data must be committed.
    pytest.mark.django_db(transaction=True),
]

# The default routes come from routing's data migration (slugs and names are the API's).
DEFAULT_ROUTES = {
    "emergency": "Emergency",
    "booking": "Booking & Access",
    "tech": "TechSupport",
    "brand": "BrandTone",
}


@pytest.fixture(scope="module", autouse=True)
def _orm_beside_playwright() -> Iterator[None]:
    """Playwright's sync API runs an event loop in the test's thread, so Django takes the
    test's own (synchronous) ORM calls, and its database teardown, for calls made on a loop.
    Only these tests allow it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def default_routes() -> dict[str, str]:
    """The default routes as routing's data migration makes them.

    A transactional test (these, or others in the suite) flushes the database, migration
    data included; re-running the migration's own function puts the routes back unchanged.
    """
    if Route.objects.filter(slug__in=DEFAULT_ROUTES).count() < len(DEFAULT_ROUTES):
        migration = importlib.import_module("routing.migrations.0002_default_routes")
        migration.create_default_routes(django_apps, None)
        # Written behind the services' back: drop what a server may have cached meanwhile.
        route_catalog_invalidate()
    names = dict(Route.objects.filter(enabled=True).values_list("slug", "name"))
    assert {slug: names.get(slug) for slug in DEFAULT_ROUTES} == DEFAULT_ROUTES
    return names


@pytest.fixture
def desk_user():
    return UserFactory(username="frontdesk", first_name="Front", last_name="Desk")


@pytest.fixture
def console_server(asgi_live_server):
    """The console served by the ASGI application, as production and ``make run`` serve it."""
    return asgi_live_server


@pytest.fixture
def new_page(browser, default_routes, console_server):
    """A tablet-sized (1024x768) page on the live server; any script error or CSP violation
    fails the test."""
    from playwright.sync_api import expect

    context = browser.new_context(
        base_url=console_server.url, viewport={"width": 1024, "height": 768}
    )
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Anything the Content Security Policy blocked is an error too (Chromium says so here).
    page.on(
        "console",
        lambda message: "Content Security Policy" in message.text and errors.append(message.text),
    )
    yield page
    context.close()
    assert errors == [], f"script errors or CSP violations on the page: {errors}"


@pytest.fixture
def page(new_page, console_server, desk_user):
    """The console, signed in as the desk user (through a session cookie: no login page)."""
    client = Client()
    client.force_login(desk_user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    new_page.context.add_cookies(
        [{"name": cookie.key, "value": cookie.value, "url": console_server.url}]
    )
    new_page.goto("/")
    return new_page


def sse(*events: tuple[str, dict]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def request_object(**overrides) -> dict:
    body = {
        "id": "7d6f2a7e-7d0e-4c55-9a43-0d3c2f6f1b11",
        "status": "ok",
        "route": {"slug": "tech", "name": "TechSupport"},
        "routing": {"source": "local", "confidence": 0.873},
        "answer": "",
        "cached": False,
        "escalated": False,
        "timings_ms": {"routing": 1.2, "ttft": 350.4, "assistant": 1200.0, "total": 1210.5},
        "created_at": "2026-01-31T18:00:00Z",
    }
    body.update(overrides)
    return body


def test_login_ask_stream_and_feedback(new_page, console_server, desk_user):
    """The whole path: log in, Ctrl+Enter, route badge, streamed answer, timings, feedback."""
    from playwright.sync_api import expect

    page = new_page
    page.goto("/")
    expect(page).to_have_url(f"{console_server.url}/accounts/login/?next=/")
    page.get_by_label("Username").fill(desk_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{console_server.url}/")
    expect(page.get_by_role("banner")).to_contain_text("Front Desk")

    text = page.get_by_label("Describe the request")
    expect(text).to_be_focused()
    text.press_sequentially("TrackMan frozen in bay 3")
    expect(page.locator("#text-counter")).to_contain_text("24 / 4000")
    page.keyboard.press("Control+Enter")

    expect(page.locator("#route-badge")).to_have_text("TechSupport")
    expect(page.locator("#route-how")).to_have_text(re.compile(r"\d+% confidence · \w"))
    expect(page.locator("#answer")).to_have_text(re.compile(r"\w{3,}"))
    expect(page.locator("#timings")).to_be_visible()
    for key in ("routing", "ttft", "assistant", "total"):
        expect(page.locator(f'[data-timing="{key}"]')).to_have_text(re.compile(r"^[\d,]+ ms$"))
    expect(page.locator("#status-pill")).to_have_text("OK")
    expect(page.locator("#answer")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#emergency-banner")).to_be_hidden()
    expect(text).to_have_value("")  # ready for the next request

    page.get_by_role("button", name="Helpful", exact=True).click()
    expect(page.locator("#action-status")).to_contain_text("Marked as helpful")
    expect(page.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )

    first = page.locator("#history > li").first
    expect(first).to_contain_text("TrackMan frozen in bay 3")
    expect(first.locator(".badge")).to_have_text("TechSupport")
    expect(page.locator("#history-empty")).to_be_hidden()

    log = RequestLog.objects.select_related("route").get()
    assert log.status == RequestStatus.OK
    assert log.route.slug == "tech"
    assert log.user == desk_user
    assert log.channel == Channel.WEB
    assert log.text == "TrackMan frozen in bay 3"
    assert log.feedback_helpful is True
    assert log.answer.strip()


def test_not_helpful_with_a_comment_and_escalate(page):
    from playwright.sync_api import expect

    page.get_by_label("Route", exact=True).select_option(label="TechSupport")
    page.get_by_label("Location").fill("Bedford, bay 3")
    page.get_by_label("Describe the request").fill("Projector in bay 3 shows no picture")
    page.get_by_role("button", name="Send request").click()
    expect(page.locator("#route-how")).to_have_text("You chose")
    expect(page.locator("#status-pill")).to_have_text(re.compile("OK|Cached"))

    page.get_by_role("button", name="Not helpful").click()
    comment = page.get_by_label("What was wrong?")
    expect(comment).to_be_focused()
    comment.fill("Steps were for the old projector model")
    page.get_by_role("button", name="Send feedback").click()
    expect(page.locator("#action-status")).to_contain_text("feedback recorded")
    expect(comment).to_be_hidden()

    page.get_by_role("button", name="Escalate").click()
    expect(page.locator("#action-status")).to_contain_text("Escalated")
    expect(page.locator("#status-pill")).to_have_text("Escalated")
    expect(page.locator("#history > li").first.locator(".status")).to_have_text("Escalated")

    log = RequestLog.objects.get()
    assert log.routing_source == "manual"
    assert log.location == "Bedford, bay 3"
    assert log.feedback_helpful is False
    assert log.feedback_comment == "Steps were for the old projector model"
    assert log.escalated is True
    assert log.status == RequestStatus.ESCALATED


def test_emergency_is_unmistakable(page):
    from playwright.sync_api import expect

    page.get_by_label("Describe the request").fill("Smoke coming out of the projector in bay 2")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#route-badge")).to_have_text("Emergency")
    banner = page.locator("#emergency-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Emergency")
    expect(banner).to_have_css("background-color", "rgb(180, 35, 24)")
    expect(page.locator("#status-pill")).to_have_text(re.compile("OK|Timeout|Error"))
    expect(page.locator("#history > li").first).to_have_class(
        re.compile("history__item--emergency")
    )


def test_empty_text_is_refused_in_the_page(page):
    from playwright.sync_api import expect

    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if "/api/" in r.url else None)
    page.get_by_label("Describe the request").fill("   ")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#text-error")).to_have_text("Type what is going on first.")
    expect(page.get_by_label("Describe the request")).to_have_attribute("aria-invalid", "true")
    assert calls == []


def test_validation_errors_are_shown_next_to_their_fields(page):
    from playwright.sync_api import expect

    errors = {
        "text": ["Describe what is going on: the text is empty."],
        "route": ["Unknown or disabled route 'tech'."],
        "location": ["Keep the location under 100 characters."],
    }
    page.route(
        "**/api/v1/requests/",
        lambda route: route.fulfill(
            status=400, content_type="application/json", body=json.dumps(errors)
        ),
    )
    page.get_by_label("Describe the request").fill("TrackMan frozen in bay 3")
    page.get_by_role("button", name="Send request").click()
    expect(page.locator("#text-error")).to_have_text(errors["text"][0])
    expect(page.locator("#route-error")).to_have_text(errors["route"][0])
    expect(page.locator("#location-error")).to_have_text(errors["location"][0])
    expect(page.locator("#result")).to_be_hidden()
    expect(page.get_by_label("Describe the request")).to_have_value("TrackMan frozen in bay 3")


def test_network_failure_says_so(page):
    from playwright.sync_api import expect

    page.route("**/api/v1/requests/", lambda route: route.abort("internetdisconnected"))
    page.get_by_label("Describe the request").fill("TrackMan frozen in bay 3")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#form-error")).to_contain_text("Could not reach ClubOS")
    expect(page.get_by_role("button", name="Send request")).to_have_attribute(
        "aria-disabled", "false"
    )


def test_streamed_text_is_formatted_safely_and_errors_are_styled(page):
    """Deltas are text: **bold** and numbered lists are formatted, markup is never parsed."""
    from playwright.sync_api import expect

    body = sse(
        (
            "route",
            {k: request_object()[k] for k in ("id", "route", "routing")}
            | {"timings_ms": {"routing": 1.2}},
        ),
        ("delta", {"text": '**Restart** the app <img src=x onerror="window.pwned=1">\n'}),
        ("delta", {"text": "1. Open the bay PC\n2. Restart TrackMan"}),
        (
            "error",
            request_object(status="timeout", error="The assistant did not answer in time."),
        ),
    )
    page.route(
        "**/api/v1/requests/",
        lambda route: route.fulfill(status=201, content_type="text/event-stream", body=body),
    )
    page.get_by_label("Describe the request").fill("TrackMan frozen in bay 3")
    page.keyboard.press("Control+Enter")
    answer = page.locator("#answer")
    expect(answer.locator("strong")).to_have_text("Restart")
    expect(answer.locator("ol > li")).to_have_text(["Open the bay PC", "Restart TrackMan"])
    expect(answer).to_contain_text('<img src=x onerror="window.pwned=1">')
    assert answer.locator("img").count() == 0
    assert page.evaluate("window.pwned") is None
    expect(page.locator("#status-pill")).to_have_class(re.compile("status--timeout"))
    expect(page.locator("#status-pill")).to_have_text("Timeout")
    expect(page.locator("#result-error")).to_have_text("The assistant did not answer in time.")
    expect(page.locator("#route-how")).to_have_text("87% confidence · Local classifier")
    expect(page.locator('[data-timing="total"]')).to_have_text(re.compile(r"^1,?211 ms$"))
