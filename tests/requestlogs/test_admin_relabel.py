"""The admin's re-label action: no route is picked for the admin."""

import pytest
from django.urls import reverse

from requestlogs.models import RequestLog
from routing.models import Route
from tests.requestlogs.factories import RequestLogFactory, UserFactory

pytestmark = pytest.mark.django_db

LOGS = reverse("admin:requestlogs_requestlog_changelist")


@pytest.fixture
def admin_client_(client):
    client.force_login(UserFactory(superuser=True, username="owner"))
    return client


def test_the_relabel_picker_starts_with_no_route_chosen(admin_client_):
    log = RequestLogFactory(route=Route.objects.get(slug="tech"), text="TrackMan frozen")

    picker = admin_client_.post(LOGS, {"action": "relabel", "_selected_action": [log.pk]})

    assert picker.status_code == 200
    field = picker.context["form"]["route"]
    assert field.value() is None
    html = str(field)
    assert '<option value="" selected>Choose the right route…</option>' in html
    # Emergency, the first route, is one choice among others, not the default.
    assert f'<option value="{Route.objects.get(slug="emergency").pk}" selected' not in html


def test_applying_without_choosing_a_route_changes_nothing(admin_client_):
    log = RequestLogFactory(route=Route.objects.get(slug="tech"), text="TrackMan frozen")

    again = admin_client_.post(
        LOGS, {"action": "relabel", "_selected_action": [log.pk], "apply": "1", "route": ""}
    )

    assert again.status_code == 200  # the picker again, with the field's error
    assert again.context["form"].errors["route"] == ["This field is required."]
    log = RequestLog.objects.get(pk=log.pk)
    assert log.corrected_route is None
    emergency = Route.objects.get(slug="emergency")
    assert "TrackMan frozen" not in emergency.utterance_list
