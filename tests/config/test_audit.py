"""The system configuration's audit trail: every change says who made it and each field's
old and new value, in the admin; the Slack webhook URL never appears there in clear.
"""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from config.audit import AUDIT_ADMIN, AUDIT_SYSTEM, secret_mask
from config.models import SystemConfig
from config.selectors import system_config_get, system_config_load
from config.services import system_config_update
from tests.admin_forms import changeform_data
from tests.requestlogs.factories import UserFactory

pytestmark = pytest.mark.django_db

HistoricalSystemConfig = SystemConfig.history.model

SECRET_A = "https://hooks.slack.com/services/T0CLUBOS/B0ALERTS/AbCdEfGhIjKlMnOpQrStUvWx"
SECRET_B = "https://hooks.slack.com/services/T0CLUBOS/B0ALERTS/ZyXwVuTsRqPoNmLkJiHgFeDc"


def change_url() -> str:
    return reverse("admin:config_systemconfig_change", args=[SystemConfig.SINGLETON_PK])


def history_url() -> str:
    return reverse("admin:config_systemconfig_history", args=[SystemConfig.SINGLETON_PK])


@pytest.fixture
def operator():
    return UserFactory(username="maya.ops", is_staff=True, groups=["operator"])


def edit_in_admin(client, captured, **changes) -> None:
    page = client.get(change_url())
    with captured(execute=True):
        response = client.post(change_url(), changeform_data(page, **changes))
    assert response.status_code == 302, response.context and response.context["errors"]


def changes_of(record) -> dict[str, tuple[object, object]]:
    delta = record.diff_against(record.prev_record)
    return {change.field: (change.old, change.new) for change in delta.changes}


def test_an_admin_edit_records_who_and_each_changed_fields_old_and_new_value(
    client, operator, django_capture_on_commit_callbacks
):
    system_config_load()
    client.force_login(operator)

    edit_in_admin(
        client,
        django_capture_on_commit_callbacks,
        confidence_threshold="0.75",
        slack_on_failure=False,
    )

    record = SystemConfig.history.latest()
    assert record.history_user == operator
    assert record.history_change_reason == AUDIT_ADMIN
    assert record.history_type == "~"
    assert changes_of(record) == {
        "confidence_threshold": (0.6, 0.75),
        "slack_on_failure": (True, False),
    }


def test_the_history_page_lists_each_change_with_its_author_and_old_to_new_values(
    client, operator, django_capture_on_commit_callbacks
):
    client.force_login(operator)
    edit_in_admin(client, django_capture_on_commit_callbacks, assistant_retries="2")
    system_config_update(assistant_timeout_s=20.0)

    response = client.get(history_url())

    assert response.status_code == 200
    page = response.content.decode()
    newest, by_operator = list(response.context["page_obj"])[:2]
    assert newest.history_delta_changes == [
        {"field": "Assistant timeout (s)", "old": "15.0", "new": "20.0"}
    ]
    assert (newest.history_user, newest.history_change_reason) == (None, AUDIT_SYSTEM)
    assert by_operator.history_delta_changes == [
        {"field": "Assistant retries", "old": "1", "new": "2"}
    ]
    assert by_operator.history_user.username == "maya.ops"
    assert "<strong>Assistant retries:</strong>" in page
    assert "maya.ops" in page


def test_the_webhook_url_is_kept_and_shown_masked_yet_each_change_shows(
    client, operator, django_capture_on_commit_callbacks
):
    client.force_login(operator)
    edit_in_admin(client, django_capture_on_commit_callbacks, slack_webhook_url=SECRET_A)
    edit_in_admin(client, django_capture_on_commit_callbacks, slack_webhook_url=SECRET_B)
    edit_in_admin(client, django_capture_on_commit_callbacks, slack_webhook_url="")

    # Nowhere in the history table...
    stored = list(HistoricalSystemConfig.objects.values_list("slack_webhook_url", flat=True))
    assert not [value for value in stored if "AbCdEf" in value or "ZyXwVu" in value]
    # ...yet each change is there: set, replaced, cleared.
    first, second, cleared = SystemConfig.history.order_by("-history_id")[:3][::-1]
    assert changes_of(first)["slack_webhook_url"] == ("", secret_mask(SECRET_A))
    assert changes_of(second)["slack_webhook_url"] == (secret_mask(SECRET_A), secret_mask(SECRET_B))
    assert changes_of(cleared)["slack_webhook_url"] == (secret_mask(SECRET_B), "")
    assert secret_mask(SECRET_A).startswith("[secret] https://hooks.slack.com/… ends UvWx")
    # ...nor on the history page, nor on an old version's page.
    history_page = client.get(history_url()).content.decode()
    assert "ends UvWx" in history_page and "ends FeDc" in history_page
    version = reverse(
        "admin:config_systemconfig_simple_history",
        args=[SystemConfig.SINGLETON_PK, second.history_id],
    )
    version_page = client.get(version)
    assert version_page.status_code == 200
    for page in (history_page, version_page.content.decode()):
        assert "AbCdEfGh" not in page and "ZyXwVuTs" not in page


def test_a_secret_is_masked_whatever_writes_the_history(operator):
    row = system_config_load()
    row.slack_webhook_url = SECRET_A

    # simple-history's bulk path (its populate_history command) skips the model's signals.
    SystemConfig.history.bulk_history_create([row], default_user=operator)

    assert SystemConfig.history.latest().slack_webhook_url == secret_mask(SECRET_A)
    assert secret_mask(secret_mask(SECRET_A)) == secret_mask(SECRET_A)


def test_an_old_version_can_be_viewed_but_never_saved_back(
    client, operator, django_capture_on_commit_callbacks
):
    client.force_login(operator)
    edit_in_admin(client, django_capture_on_commit_callbacks, slack_webhook_url=SECRET_A)
    edit_in_admin(client, django_capture_on_commit_callbacks, assistant_retries="3")
    old = SystemConfig.history.order_by("-history_id")[1]
    version = reverse(
        "admin:config_systemconfig_simple_history",
        args=[SystemConfig.SINGLETON_PK, old.history_id],
    )
    assert client.get(version).status_code == 200
    # What a browser would send, were the page a form that saves.
    data = changeform_data(client.get(change_url()), assistant_retries="1", slack_webhook_url="")

    response = client.post(version, data)

    assert response.status_code == 405
    row = SystemConfig.objects.get()
    assert (row.assistant_retries, row.slack_webhook_url) == (3, SECRET_A)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("admin:config_systemconfig_history", ["abc"]),
        ("admin:config_systemconfig_simple_history", ["abc", "1"]),
        ("admin:config_systemconfig_simple_history", [SystemConfig.SINGLETON_PK, "abc"]),
        ("admin:routing_route_history", ["not-a-number"]),
        ("admin:routing_route_simple_history", ["1", "1.5"]),
        ("admin:routing_knowledgeentry_history", ["%00"]),
    ],
)
def test_a_history_address_with_a_malformed_id_is_not_found(client, operator, name, args):
    system_config_update(assistant_retries=2)
    client.force_login(operator)

    assert client.get(reverse(name, args=args)).status_code == 404


def test_staff_who_may_only_view_the_config_see_the_webhook_masked_on_it_too(client):
    system_config_update(slack_webhook_url=SECRET_A)
    system_config_update(assistant_retries=2)
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_systemconfig"))
    client.force_login(viewer)
    version = SystemConfig.history.latest().history_id

    pages = [
        client.get(change_url()),
        client.get(history_url()),
        client.get(
            reverse(
                "admin:config_systemconfig_simple_history",
                args=[SystemConfig.SINGLETON_PK, version],
            )
        ),
    ]

    for page in pages:
        assert page.status_code == 200
        assert SECRET_A not in page.content.decode()
        assert "AbCdEf" not in page.content.decode()
    assert secret_mask(SECRET_A) in pages[0].content.decode()


def test_a_regular_expression_in_a_change_logs_address_is_refused(client, operator):
    system_config_update(assistant_retries=2)
    client.force_login(operator)
    change_log = reverse("admin:config_historicalsystemconfig_changelist")
    routes = reverse("admin:routing_route_changelist")

    assert client.get(change_log, {"history_change_reason__regex": "("}).status_code == 400
    assert client.get(routes, {"instructions__iregex": "("}).status_code == 400
    assert client.get(change_log, {"history_change_reason": "system"}).status_code == 200


def test_support_staff_cannot_read_the_history(client):
    client.force_login(UserFactory(is_staff=True, groups=["support"]))

    assert client.get(history_url()).status_code == 403


def test_history_is_written_on_edits_only_and_warm_reads_stay_free(
    client, operator, django_capture_on_commit_callbacks, django_assert_num_queries
):
    client.force_login(operator)
    system_config_get()  # warm
    edit_in_admin(client, django_capture_on_commit_callbacks, confidence_threshold="0.8")
    records = SystemConfig.history.count()

    # The edit reached the cached copy (invalidated on commit, history written in the same
    # transaction), and reading it again costs no query and writes no history.
    assert system_config_get().confidence_threshold == 0.8
    with django_assert_num_queries(0):
        for _ in range(5):
            assert system_config_get().confidence_threshold == 0.8
    assert SystemConfig.history.count() == records


def test_the_change_log_lists_who_changed_the_config_and_when(
    client, operator, django_capture_on_commit_callbacks
):
    client.force_login(operator)
    edit_in_admin(client, django_capture_on_commit_callbacks, assistant_retries="2")
    system_config_update(assistant_timeout_s=20.0)
    change_log = reverse("admin:config_historicalsystemconfig_changelist")

    everything = client.get(change_log)
    by_operator = client.get(change_log, {"history_user__id__exact": operator.pk})

    assert everything.status_code == 200
    reasons = [r.history_change_reason for r in everything.context["cl"].result_list]
    assert reasons[:2] == [AUDIT_SYSTEM, AUDIT_ADMIN]
    assert [r.history_user for r in by_operator.context["cl"].result_list] == [operator]
    assert history_url() in everything.content.decode()
    # A record, not a form: nothing in it can be added, changed or deleted.
    record = SystemConfig.history.latest()
    assert client.get(reverse("admin:config_historicalsystemconfig_add")).status_code == 403
    delete = reverse("admin:config_historicalsystemconfig_delete", args=[record.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert SystemConfig.history.filter(pk=record.pk).exists()


def test_support_staff_do_not_see_the_configs_change_log(client):
    client.force_login(UserFactory(is_staff=True, groups=["support"]))

    assert client.get(reverse("admin:config_historicalsystemconfig_changelist")).status_code == 403
