"""The Content Security Policy in a real browser: every page ClubOS serves loads with no
violation, and the policy is really enforced (Debian's Chromium through Playwright, never a
downloaded browser; skipped, with the reason, when it is not installed)."""

import re
import shutil
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import Client

from routing.services import route_update
from tests.requestlogs.factories import RequestLogFactory, UserFactory
from tests.routing.factories import RouteFactory

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (apt-get install -y chromium); "
        "these tests never download a browser",
    ),
    pytest.mark.django_db(transaction=True),
]

# Recorded by the page itself from the moment it starts: the browser's own report of each
# blocked script, style, image, connection or frame.
LISTEN = """
window.__csp_violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__csp_violations.push(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} on ${event.documentURI}`
  );
});
"""


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


class Watched:
    """A page and every CSP violation and script error it met."""

    def __init__(self, page) -> None:
        self.page = page
        self.console: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.console.append(f"page error: {exc}"))
        page.add_init_script(LISTEN)

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.console.append(message.text)

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__csp_violations") + self.console

    def visit(self, path: str) -> list[str]:
        response = self.page.goto(path)
        assert response is not None and response.status == 200, (path, response)
        assert "default-src 'self'" in response.headers["content-security-policy"]
        self.page.wait_for_load_state("networkidle")
        return self.violations()


@pytest.fixture
def staff_page(browser, asgi_live_server) -> Iterator[Watched]:
    from playwright.sync_api import expect

    admin = UserFactory(username="csp-admin", superuser=True)
    client = Client()
    client.force_login(admin)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context = browser.new_context(base_url=asgi_live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": asgi_live_server.url}])
    yield Watched(context.new_page())
    context.close()


def test_console_admin_and_api_docs_load_with_no_violation(staff_page):
    from playwright.sync_api import expect

    route = RouteFactory(slug="csp-route", name="CSP route")
    log = RequestLogFactory(route=route, status="ok")
    page = staff_page.page

    assert staff_page.visit("/") == []
    expect(page.locator("#request-form")).to_be_visible()  # console.js ran: needs-js shown
    page.get_by_label("Describe the request").fill("TrackMan frozen in bay 3")
    page.get_by_role("button", name="Send request").click()
    expect(page.locator("#status-pill")).not_to_have_text("Working")
    assert staff_page.violations() == []

    assert staff_page.visit("/admin/") == []
    assert staff_page.visit("/admin/requestlogs/requestlog/") == []
    # The status colour comes from the stylesheet, not a style attribute.
    expect(page.locator(".status-badge--ok").first).to_have_css("color", "rgb(21, 128, 61)")
    assert staff_page.visit(f"/admin/requestlogs/requestlog/{log.pk}/change/") == []
    assert staff_page.visit(f"/admin/routing/route/{route.pk}/change/") == []
    # The change history (simple-history's pages: the list of changes, an old version).
    route_update(route=route, name="CSP route, renamed")
    assert staff_page.visit(f"/admin/routing/route/{route.pk}/history/") == []
    expect(page.locator("#change-history")).to_contain_text("CSP route, renamed")
    first = route.history.earliest().history_id
    assert staff_page.visit(f"/admin/routing/route/{route.pk}/history/{first}/") == []
    assert staff_page.visit("/admin/routing/historicalroute/") == []
    assert staff_page.visit("/admin/auth/user/add/") == []

    assert staff_page.visit("/api/v1/docs/") == []
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("ClubOS API")
    assert staff_page.violations() == []
    assert staff_page.visit("/api/v1/redoc/") == []
    expect(page.locator("h1").first).to_contain_text("ClubOS API")
    assert staff_page.violations() == []


def test_login_page_loads_with_no_violation(browser, asgi_live_server):
    context = browser.new_context(base_url=asgi_live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        watched = Watched(context.new_page())
        assert watched.visit("/accounts/login/") == []
    finally:
        context.close()


def test_the_policy_is_enforced(staff_page):
    """The checks above would pass on a page with no policy at all: here an inline style and
    an inline script are refused, and the browser says so."""
    from playwright.sync_api import expect

    assert staff_page.visit("/") == []
    staff_page.page.evaluate(
        """() => {
          const box = document.createElement("div");
          box.id = "injected";
          box.innerHTML = '<span style="color: red">x</span><img src="x" onerror="window.__ran = 1">';
          document.body.append(box);
          const script = document.createElement("script");
          script.textContent = "window.__ran = 2";
          document.body.append(script);
        }"""
    )
    expect(staff_page.page.locator("#injected span")).to_be_attached()
    staff_page.page.wait_for_timeout(200)
    found = staff_page.violations()
    assert any(re.match(r"style-src-attr blocked inline", v) for v in found), found
    assert any(re.match(r"script-src-elem blocked inline", v) for v in found), found
    assert staff_page.page.evaluate("window.__ran") is None
