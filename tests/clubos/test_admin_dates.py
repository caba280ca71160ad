"""Every change list in the admin, ClubOS's and the installed apps' (login attempts, API
tokens), answers a date out of range in its filters the way Django answers any lookup it
cannot use: back to the list with an error flag, never a 500."""

from typing import Any

import pytest
from django.contrib import admin
from django.db import models

from tests.requestlogs.factories import UserFactory

OUT_OF_RANGE = (
    "{f}__year=9999&{f}__month=12&{f}__day=31",  # the date hierarchy's last day + 1 overflows
    "{f}__gte=9999-12-31T23:59:59-23:59",  # an aware moment with no UTC counterpart
    "{f}__lt=0001-01-01",
    "{f}__year=0",
)


def _date_filtered_lists() -> list[tuple[str, str]]:
    """(change list URL, date field) for each date the admin lets a query string filter on."""
    lists: list[tuple[str, str]] = []
    for model, model_admin in admin.site._registry.items():
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        names: set[str] = {model_admin.date_hierarchy} if model_admin.date_hierarchy else set()
        for entry in model_admin.list_filter:
            name: Any = entry[0] if isinstance(entry, tuple) else entry
            if isinstance(name, str):
                field = model._meta.get_field(name.split("__")[0])
                if isinstance(field, models.DateField):
                    names.add(name)
        lists.extend((url, name) for name in sorted(names))
    return lists


def test_the_admin_has_date_filters_to_check():
    urls = {url for url, _ in _date_filtered_lists()}
    assert {"/admin/requestlogs/requestlog/", "/admin/knox/authtoken/"} <= urls
    assert "/admin/axes/accessattempt/" in urls


# Committed as the server runs (autocommit): on PostgreSQL a refused value aborts the
# transaction it ran in, which a test's one wrapping transaction would carry to every later
# request.
@pytest.mark.django_db(transaction=True)
def test_no_change_list_answers_500_for_a_date_out_of_range(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    client.raise_request_exception = False
    answered: dict[str, int] = {}
    for url, name in _date_filtered_lists():
        assert client.get(url).status_code == 200, url
        for query in OUT_OF_RANGE:
            target = f"{url}?{query.format(f=name)}"
            answered[target] = client.get(target).status_code
    assert {t: code for t, code in answered.items() if code >= 500} == {}
    # Refused as Django refuses a lookup it cannot use: back to the list, flagged.
    refused = client.get(f"/admin/knox/authtoken/?{OUT_OF_RANGE[0].format(f='created')}")
    assert refused.status_code == 302 and refused["Location"].endswith("?e=1")


@pytest.mark.django_db
def test_a_date_in_range_still_filters(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get("/admin/knox/authtoken/?created__year=2026&created__month=12")
    assert page.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_no_change_list_runs_a_regular_expression_from_its_address(client):
    """A malformed pattern was a 500 on SQLite, and any pattern runs on every row: each list
    (users, tokens, login attempts too) refuses it as a lookup it cannot use."""
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    client.raise_request_exception = False
    answered: dict[str, int] = {}
    for model in admin.site._registry:
        text = next(
            (f.name for f in model._meta.get_fields() if isinstance(f, models.CharField)), None
        )
        if text is None:
            continue
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/?{text}__regex=("
        answered[url] = client.get(url).status_code
    assert any(url.startswith("/admin/auth/user/?") for url in answered)
    assert {url: code for url, code in answered.items() if code >= 500} == {}
    assert set(answered.values()) <= {302, 400}
