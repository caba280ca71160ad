"""The admin's timing dashboard, request list and request page in a real browser (Debian's
Chromium through Playwright, never a downloaded browser; skipped, with the reason, when it
is not installed), on a 1,366 x 768 screen: the laptop the venues' managers use."""

import re
import shutil
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from requestlogs.models import RequestStatus, RoutingSource
from tests.requestlogs.factories import RequestLogFactory, UserFactory
from tests.routing.factories import RouteFactory

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
TIMEOUT_MS = 15_000
SCREEN = {"width": 1366, "height": 768}

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


@pytest.fixture(scope="module", autouse=True)
def _orm_beside_playwright() -> Iterator[None]:
    # Playwright's sync API runs a loop in the test's thread (see test_console_browser.py).
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
def page(browser, asgi_live_server):
    """A superuser's admin page on the laptop screen; any script error or CSP violation
    fails the test."""
    from playwright.sync_api import expect

    client = Client()
    client.force_login(UserFactory(username="manager", superuser=True))
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context = browser.new_context(base_url=asgi_live_server.url, viewport=SCREEN)
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": asgi_live_server.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda message: "Content Security Policy" in message.text and errors.append(message.text),
    )
    yield page
    context.close()
    assert errors == [], f"script errors or CSP violations on the page: {errors}"


@pytest.fixture
def seeded():
    """Two routes' requests over the last day, two in each of ten whole hours of the clock:
    Tech X slow, Booking X fast."""
    tech = RouteFactory(slug="tech-x", name="Tech X", priority=1)
    booking = RouteFactory(slug="booking-x", name="Booking X", priority=2)
    # The charts' hourly buckets are the clock's hours: seed inside hours long over (none
    # in the last hour).
    newest_hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    for hour in range(0, 20, 2):
        RequestLogFactory(
            route=tech,
            created_at=newest_hour - timedelta(hours=hour) + timedelta(minutes=20),
            total_ms=3000.0 + 100 * hour,
            status=RequestStatus.TIMEOUT if hour == 4 else RequestStatus.OK,
        )
        RequestLogFactory(
            route=booking,
            created_at=newest_hour - timedelta(hours=hour) + timedelta(minutes=10),
            total_ms=800.0 + 10 * hour,
            routing_source=RoutingSource.MANUAL,
            feedback_helpful=hour != 6,
        )
    return tech, booking


def test_dashboard_shows_figures_and_charts_for_seeded_requests(page, seeded):
    from playwright.sync_api import expect

    page.goto("/admin/")
    page.get_by_role("link", name="Timing dashboard").click()
    expect(page).to_have_title(re.compile("Timing dashboard"))

    timings = page.locator("#dashboard-timings")
    expect(timings.locator('tr[data-route="tech-x"] th')).to_have_text("Tech X")
    expect(timings.locator('tr[data-route="tech-x"] [data-figure="count"]')).to_have_text("10")
    expect(timings.locator('tr[data-route="booking-x"] [data-figure="count"]')).to_have_text("10")
    expect(timings.locator('tr[data-route="all"] [data-figure="count"]')).to_have_text("20")
    # Tech X's totals: 3,000, 3,200 ... 4,800 ms, so p50 3,900 (percentile_cont): the 8th cell.
    expect(timings.locator('tr[data-route="tech-x"] td').nth(7)).to_have_text("3,900")
    rates = page.locator('#dashboard-rates tr[data-route="tech-x"] td')
    expect(rates.nth(1)).to_have_text("10.0%")  # one timeout in ten
    expect(page.locator('#dashboard-rates tr[data-route="booking-x"] td').nth(4)).to_have_text(
        "10.0%"  # one "not helpful" of ten rated
    )

    total = page.locator("#chart-total svg")
    expect(total).to_be_visible()
    for slug in ("tech-x", "booking-x"):
        for percentile in ("p50", "p95"):
            expect(
                total.locator(f'polyline[data-route="{slug}"][data-percentile="{percentile}"]')
            ).not_to_have_count(0)
    expect(page.locator("#chart-total .chart-legend")).to_contain_text("Tech X")
    # Hourly buckets: each of the ten hours with requests has a bar (two requests each).
    expect(page.locator("#chart-volume svg rect.chart-bar")).to_have_count(10)

    # Another period is a form: the last hour holds none of them, the last 7 days all.
    page.get_by_label("Period").select_option(label="Last hour")
    page.get_by_role("button", name="Show").click()
    expect(
        page.locator('#dashboard-timings tr[data-route="all"] [data-figure="count"]')
    ).to_have_text("0")
    expect(page.locator("#chart-total")).to_contain_text("No routed requests in this period.")
    page.get_by_label("Period").select_option(label="Last 7 days")
    page.get_by_role("button", name="Show").click()
    expect(
        page.locator('#dashboard-timings tr[data-route="all"] [data-figure="count"]')
    ).to_have_text("20")

    # A custom period with an impossible date is a message on the page, not an error page.
    page.get_by_label("Period").select_option(label="Custom")
    page.get_by_label("First day").fill("2026-12-05")
    page.get_by_label("Last day").fill("2026-11-01")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_contain_text("must not be before")

    with page.expect_download() as download:
        page.goto("/admin/requestlogs/requestlog/dashboard/")
        page.get_by_role("link", name="Figures (CSV)").click()
    assert download.value.suggested_filename.startswith("timings-")


def test_request_list_columns_staff_need_fit_a_1366_screen(page, seeded):
    page.goto("/admin/requestlogs/requestlog/")
    page.locator("#result_list").wait_for()

    width = page.evaluate("window.innerWidth")
    assert width == SCREEN["width"]
    for column in ("when", "route", "status_badge", "total_time", "feedback"):
        box = page.locator(f"#result_list th.column-{column}").bounding_box()
        assert box is not None, column
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (column, box)
    # No horizontal scrolling at all, of the page or of the list, the filters open beside it.
    assert page.locator("#changelist-filter").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    results = page.locator("#changelist .results")
    assert results.evaluate("node => node.scrollWidth <= node.clientWidth"), results.evaluate(
        "node => [node.scrollWidth, node.clientWidth]"
    )


def test_request_page_formats_the_answer_like_the_console(page):
    from playwright.sync_api import expect

    log = RequestLogFactory(
        answer='**Restart** the app <img src=x onerror="window.pwned=1">\n\n'
        "1. Open the bay PC\n2. Restart TrackMan"
    )
    page.goto(f"/admin/requestlogs/requestlog/{log.pk}/change/")

    answer = page.locator(".formatted-answer")
    expect(answer).to_have_class(re.compile("is-formatted"))
    expect(answer.locator("strong")).to_have_text("Restart")
    expect(answer.locator("ol > li")).to_have_text(["Open the bay PC", "Restart TrackMan"])
    expect(answer).to_contain_text('<img src=x onerror="window.pwned=1">')
    assert answer.locator("img").count() == 0
    assert page.evaluate("window.pwned") is None
