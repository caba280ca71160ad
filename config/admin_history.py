"""The change history of an audited model in the admin (``config.audit``).

Each admin page of a route, a knowledge entry or the system configuration has a "History"
button: every change with its date, who made it, through what (admin, system, a command)
and, per field, the old value -> the new one (simple-history's diff between each record and
the one before it). Secrets show masked, as they are stored. Each audited model also has a
change log of its own (``ChangeLogAdmin``): all its rows' changes, by date, user and kind.
"""

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin
from simple_history.utils import get_history_model_for_model


def _key_or_404(model: type[models.Model], value: str) -> None:
    """A 404 for an address whose id is not a key of ``model``: simple-history's views look
    it up unchecked, and a query for ``id="abc"`` raised ValueError (a 500)."""
    try:
        model._meta.pk.to_python(unquote(value))
    except ValidationError:
        raise Http404(f"No {model._meta.verbose_name} has the id {value!r}.") from None


class RegexLookupsRefused:
    """A ModelAdmin mixin. Django lets a list's address filter any field of its model by any
    lookup. A regular expression runs on every row (the request log and the histories grow
    for good), and on SQLite a malformed one ("(") raised in the database, a 500: refused,
    as a 400."""

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if lookup.endswith(("__regex", "__iregex")):
            return False
        allowed: bool = super().lookup_allowed(lookup, value, request)  # type: ignore[misc]
        return allowed


class HistoryShownAdmin(RegexLookupsRefused, SimpleHistoryAdmin):
    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        _key_or_404(self.model, object_id)
        response: HttpResponse = super().history_view(request, object_id, extra_context)
        return response

    def history_form_view(
        self,
        request: HttpRequest,
        object_id: str,
        version_id: str,
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # An old version is shown, never saved back: simple-history's view would save a POST
        # (even with reverting switched off) through the change form, masked secrets included.
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        _key_or_404(self.model, object_id)
        _key_or_404(get_history_model_for_model(self.model), version_id)
        response: HttpResponse = super().history_form_view(
            request, object_id, version_id, extra_context
        )
        return response


class ChangeLogAdmin(RegexLookupsRefused, admin.ModelAdmin[Any]):
    """Every recorded change of one audited model, newest first, read-only: who changed what
    and when across all its rows. Each row links to its object's history, where the values
    are. Whoever may see the model sees its change log."""

    list_display = ("when", "what", "kind", "by", "through", "field_changes")
    list_display_links = None
    list_filter = (
        "history_type",
        "history_change_reason",
        ("history_user", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("history_user",)
    date_hierarchy = "history_date"
    search_fields = ("history_user__username", "history_change_reason")
    list_per_page = 50

    def _tracked_permission(self, request: HttpRequest, action: str) -> bool:
        tracked = self.model.instance_type._meta
        return request.user.has_perm(f"{tracked.app_label}.{action}_{tracked.model_name}")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._tracked_permission(request, "view") or self._tracked_permission(
            request, "change"
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="when", ordering="history_date")
    def when(self, record: Any) -> Any:
        return record.history_date

    @admin.display(description="what")
    def what(self, record: Any) -> str:
        return str(record.history_object)

    @admin.display(description="change", ordering="history_type")
    def kind(self, record: Any) -> str:
        return str(record.get_history_type_display())

    @admin.display(description="by", ordering="history_user__username")
    def by(self, record: Any) -> str:
        return str(record.history_user) if record.history_user else "no one (system)"

    @admin.display(description="through", ordering="history_change_reason")
    def through(self, record: Any) -> str:
        return str(record.history_change_reason or "")

    @admin.display(description="changes")
    def field_changes(self, record: Any) -> str:
        tracked = self.model.instance_type._meta
        url = reverse(
            f"admin:{tracked.app_label}_{tracked.model_name}_history",
            args=[getattr(record, tracked.pk.attname)],
        )
        return format_html('<a href="{}">old → new values</a>', url)
