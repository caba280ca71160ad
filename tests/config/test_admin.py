"""The system configuration in the admin: one row, edited in place, live at once."""

import pytest
from django.urls import reverse

from config.models import RoutingStrategy, SystemConfig
from config.selectors import system_config_get
from tests.admin_forms import changeform_data
from tests.requestlogs.factories import UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:config_systemconfig_changelist")


def change_url() -> str:
    return reverse("admin:config_systemconfig_change", args=[SystemConfig.SINGLETON_PK])


@pytest.fixture
def admin_client_(client):
    client.force_login(UserFactory(superuser=True))
    return client


def test_changelist_goes_straight_to_the_one_row(admin_client_):
    response = admin_client_.get(CHANGELIST)

    assert response.status_code == 302
    assert response.url == change_url()


def test_config_cannot_be_added_or_deleted(admin_client_):
    assert admin_client_.get(reverse("admin:config_systemconfig_add")).status_code == 403
    delete = reverse("admin:config_systemconfig_delete", args=[SystemConfig.SINGLETON_PK])
    assert admin_client_.get(delete).status_code == 403
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    assert SystemConfig.objects.filter(pk=SystemConfig.SINGLETON_PK).exists()

    page = admin_client_.get(change_url()).content.decode()
    assert "deletelink" not in page


def test_change_form_groups_settings_with_their_help(admin_client_):
    page = admin_client_.get(change_url()).content.decode()

    for heading in ("Routing", "Assistant", "Response cache", "Slack"):
        assert f">{heading}<" in page
    assert "Deadline for the whole assistant call, retries included." in page
    assert "Alert when someone marks an answer not helpful." in page


def test_webhook_source_is_shown_without_the_secret(admin_client_, settings):
    settings.SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/T1/B2/secret-token"

    page = admin_client_.get(change_url()).content.decode()

    assert "SLACK_WEBHOOK_URL from the environment." in page
    assert "secret-token" not in page


def test_saving_in_the_admin_is_live_immediately(admin_client_, django_capture_on_commit_callbacks):
    assert system_config_get().confidence_threshold == 0.6  # warms the cache
    form_page = admin_client_.get(change_url())

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            change_url(),
            changeform_data(
                form_page,
                confidence_threshold="0.75",
                routing_strategy=RoutingStrategy.HYBRID,
                slack_on_failure=False,
            ),
        )

    assert response.status_code == 302
    config = system_config_get()
    assert config.confidence_threshold == 0.75
    assert config.routing_strategy == "hybrid"
    assert config.slack_on_failure is False
    assert SystemConfig.objects.count() == 1


def test_out_of_range_value_is_refused_with_a_message(admin_client_):
    form_page = admin_client_.get(change_url())

    response = admin_client_.post(
        change_url(), changeform_data(form_page, assistant_timeout_s="600")
    )

    assert response.status_code == 200
    assert "less than or equal to 120" in response.content.decode()
    assert system_config_get().assistant_timeout_s == 15.0


def test_operator_edits_config_and_support_cannot_see_it(client):
    client.force_login(UserFactory(is_staff=True, groups=["operator"]))
    form_page = client.get(change_url())
    assert form_page.status_code == 200
    assert (
        client.post(change_url(), changeform_data(form_page, assistant_retries="2")).status_code
        == 302
    )
    assert SystemConfig.objects.get().assistant_retries == 2

    client.force_login(UserFactory(is_staff=True, groups=["support"]))
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(change_url()).status_code == 403
