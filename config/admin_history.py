"""The change history of an audited model in the admin (``config.audit``).

Each admin page of a route, a knowledge entry or the system configuration has a "History"
button: every change with its date, who made it, through what (admin, system, a command)
and, per field, the old value -> the new one (simple-history's diff between each record and
the one before it). Secrets show masked, as they are stored.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from simple_history.admin import SimpleHistoryAdmin


class HistoryShownAdmin(SimpleHistoryAdmin):
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
        response: HttpResponse = super().history_form_view(
            request, object_id, version_id, extra_context
        )
        return response
