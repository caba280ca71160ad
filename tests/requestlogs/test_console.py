"""The web console at ``/`` and its login page, through Django's test client."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone

from requestlogs.models import RequestStatus
from routing.models import Route
from routing.selectors import route_catalog_get
from tests.requestlogs.factories import PASSWORD, RequestLogFactory, UserFactory
from tests.routing.factories import EmergencyRouteFactory, RouteFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    # The factory gets-or-creates by username: set the names even if "maya" already exists.
    maya = UserFactory(username="maya")
    maya.first_name, maya.last_name = "Maya", "Chen"
    maya.save(update_fields=["first_name", "last_name"])
    return maya


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def _option_values(html: str) -> list[str]:
    select = re.search(r'<select id="id_route".*?</select>', html, re.S)
    assert select is not None
    return re.findall(r'<option value="([^"]*)"', select.group(0))


class TestLogin:
    def test_anonymous_is_sent_to_the_login_page(self, client):
        response = client.get("/")
        assert response.status_code == 302
        assert response["Location"] == f"{reverse('login')}?next=/"

    def test_login_page_renders(self, client):
        response = client.get(reverse("login"))
        assert response.status_code == 200
        html = response.content.decode()
        assert 'name="username"' in html
        assert 'autocomplete="current-password"' in html
        assert "csrfmiddlewaretoken" in html
        assert "Sign in" in html
        assert "console.css" in html

    def test_login_then_the_console(self, client, user):
        response = client.post(reverse("login"), {"username": "maya", "password": PASSWORD})
        assert response.status_code == 302
        assert response["Location"] == reverse("console")
        response = client.get(response["Location"])
        assert response.status_code == 200
        assert response.context["user"] == user

    def test_login_follows_next(self, client, user):
        response = client.post(
            reverse("login"), {"username": "maya", "password": PASSWORD, "next": "/"}
        )
        assert response["Location"] == "/"

    def test_wrong_password_shows_an_error(self, client, user):
        response = client.post(reverse("login"), {"username": "maya", "password": "nope"})
        assert response.status_code == 200
        html = response.content.decode()
        assert 'role="alert"' in html
        assert "correct username and password" in html
        assert 'aria-invalid="true"' in html

    def test_logout_is_a_post_form_and_returns_to_login(self, signed_in):
        html = signed_in.get("/").content.decode()
        assert f'method="post" action="{reverse("logout")}"' in html
        response = signed_in.post(reverse("logout"))
        assert response.status_code == 302
        assert response["Location"] == reverse("login")
        assert signed_in.get("/").status_code == 302


class TestConsolePage:
    def test_renders_the_form(self, signed_in):
        response = signed_in.get("/")
        assert response.status_code == 200
        assert [t.name for t in response.templates][:2] == ["console/console.html", "base.html"]
        html = response.content.decode()
        assert '<textarea id="id_text" name="text"' in html
        # No maxlength: a longer paste is kept whole and refused with a message, not cut.
        assert 'maxlength="4000"' not in html
        assert 'data-max="4000"' in html
        assert "autofocus" in html
        assert '<label class="field__label" for="id_text">' in html
        assert '<label class="field__label" for="id_route">' in html
        assert 'list="location-options"' in html
        assert 'aria-live="polite"' in html
        assert 'data-api="/api/v1/requests/"' in html
        assert '<script type="module" src="/static/clubos/console.js">' in html
        # The console's fetch calls need the CSRF cookie.
        assert "csrftoken" in response.cookies

    def test_says_javascript_is_required_without_it(self, signed_in):
        html = signed_in.get("/").content.decode()
        assert "<noscript>" in html
        assert "JavaScript is required" in html

    def test_route_select_lists_auto_and_the_enabled_routes(self, signed_in):
        extra = RouteFactory(name="Events & Parties", slug="events")
        off = RouteFactory(name="Retired route", slug="retired", enabled=False)
        html = signed_in.get("/").content.decode()
        values = _option_values(html)
        assert values[0] == "auto"
        enabled = [r.slug for r in route_catalog_get().enabled]
        assert values[1:] == enabled
        assert extra.slug in values
        assert off.slug not in values
        assert "Events &amp; Parties" in html
        assert "Retired route" not in html

    def test_default_routes_are_offered_when_migrated(self, signed_in):
        defaults = {"emergency", "booking", "tech", "brand"}
        if not Route.objects.filter(slug__in=defaults).exists():
            pytest.skip("the default routes' data migration is not there yet")
        html = signed_in.get("/").content.decode()
        assert defaults <= set(_option_values(html))
        for name in ("Emergency", "Booking &amp; Access", "TechSupport", "BrandTone"):
            assert f">{name}</option>" in html

    def test_routes_metadata_for_the_script_marks_emergency_routes(self, signed_in):
        safety = EmergencyRouteFactory(slug="safety", name="Safety")
        response = signed_in.get("/")
        meta = {r["slug"]: r for r in response.context["routes_meta"]}
        assert meta["safety"] == {"slug": "safety", "name": "Safety", "emergency": True}
        assert 'id="routes-data"' in response.content.decode()
        assert safety.slug in response.content.decode()

    def test_header_links(self, signed_in):
        html = signed_in.get("/").content.decode()
        assert "ClubOS" in html
        assert "Maya Chen" in html
        assert 'href="/api/v1/docs/"' in html
        assert "Log out" in html

    def test_staff_see_the_admin_link(self, client):
        client.force_login(UserFactory(is_staff=True))
        html = client.get("/").content.decode()
        assert f'href="{reverse("admin:index")}"' in html

    def test_others_do_not_see_the_admin_link(self, signed_in):
        html = signed_in.get("/").content.decode()
        assert reverse("admin:index") not in html

    def test_static_assets_exist(self):
        for name in ("clubos/console.css", "clubos/console.js"):
            found = finders.find(name)
            assert found, name
            assert Path(found).stat().st_size > 1000

    def test_only_get(self, signed_in):
        assert signed_in.post("/").status_code == 405

    def test_query_count_is_small(self, signed_in, user, django_assert_max_num_queries):
        RequestLogFactory.create_batch(5, user=user)
        signed_in.get("/")  # warm the route catalog cache
        with django_assert_max_num_queries(6):
            assert signed_in.get("/").status_code == 200


class TestHistory:
    def test_empty_history(self, signed_in):
        response = signed_in.get("/")
        assert response.context["history"] == []
        assert "No requests yet" in response.content.decode()

    def test_shows_only_the_persons_own_requests(self, signed_in, user):
        mine = RequestLogFactory(user=user, text="Projector in bay 2 is flickering")
        RequestLogFactory(user=UserFactory(), text="Someone else's gift card question")
        RequestLogFactory(user=None, text="An API client's request")
        response = signed_in.get("/")
        html = response.content.decode()
        assert [row.log.pk for row in response.context["history"]] == [mine.pk]
        assert "Projector in bay 2 is flickering" in html
        assert "gift card question" not in html
        assert "API client" not in html

    def test_staff_also_see_only_their_own(self, client):
        staff = UserFactory(is_staff=True)
        RequestLogFactory(user=staff, text="My own staff request")
        RequestLogFactory(user=UserFactory(), text="A colleague's request")
        client.force_login(staff)
        html = client.get("/").content.decode()
        assert "My own staff request" in html
        assert "colleague" not in html

    def test_newest_first_and_at_most_ten(self, signed_in, user):
        now = timezone.now()
        logs = [
            RequestLogFactory(
                user=user, text=f"Request number {i}", created_at=now - timedelta(minutes=i)
            )
            for i in range(12)
        ]
        history = signed_in.get("/").context["history"]
        assert [row.log.pk for row in history] == [log.pk for log in logs[:10]]

    def test_row_shows_time_route_status_excerpt_and_total(self, signed_in, user):
        route = RouteFactory(name="Events & Parties", slug="events")
        RequestLogFactory(
            user=user,
            route=route,
            status=RequestStatus.TIMEOUT,
            text="Birthday party for 12 " + "with catering " * 30,
            total_ms=1234.4,
        )
        html = signed_in.get("/").content.decode()
        assert 'data-route="events"' in html
        assert "Events &amp; Parties</span>" in html
        assert 'class="status status--timeout">Timeout<' in html
        assert "1,234 ms" in html
        assert "Birthday party for 12" in html
        assert "…" in html  # the excerpt is cut
        assert '<time class="history__time" datetime="' in html

    def test_emergency_rows_are_marked(self, signed_in, user):
        RequestLogFactory(user=user, route=EmergencyRouteFactory())
        html = signed_in.get("/").content.decode()
        assert "history__item--emergency" in html
        assert "badge--emergency" in html

    def test_row_without_route(self, signed_in, user):
        RequestLogFactory(user=user, route=None, status=RequestStatus.ABANDONED, total_ms=None)
        html = signed_in.get("/").content.decode()
        assert "status--abandoned" in html

    def test_recent_locations_are_suggested_never_prefilled(self, signed_in, user):
        now = timezone.now()
        RequestLogFactory(user=user, location="Truro", created_at=now - timedelta(hours=2))
        RequestLogFactory(user=user, location="Bedford", created_at=now - timedelta(hours=1))
        RequestLogFactory(user=user, location="bedford", created_at=now - timedelta(hours=3))
        RequestLogFactory(user=UserFactory(), location="Somewhere Else")
        response = signed_in.get("/")
        assert response.context["locations"] == ["Bedford", "Truro"]
        html = response.content.decode()
        assert '<option value="Bedford"></option>' in html
        assert "Somewhere Else" not in html
        # The field starts empty: no request carries an earlier one's location unasked.
        [field] = re.findall(r'<input id="id_location"[^>]*>', html)
        assert "value=" not in field

    def test_model_text_is_escaped(self, signed_in, user):
        RequestLogFactory(
            user=user, text="<script>alert(1)</script>", answer="<img src=x onerror=alert(1)>"
        )
        html = signed_in.get("/").content.decode()
        assert "<script>alert(1)</script>" not in html
        assert "<img src=x" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
