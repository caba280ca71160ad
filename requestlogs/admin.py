"""The request log in the admin: read-only history, fast on a table with millions of rows.

Rows are written only by the request pipeline; the admin can read them, filter them and
(superusers only) delete them. Nothing here edits a logged request.
"""

from functools import cached_property

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Exists, OuterRef, QuerySet
from django.forms import Script
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from config.audit import AUDIT_ADMIN
from requestlogs.dashboard import dashboard_view
from requestlogs.models import Alert, AlertState, RequestLog
from requestlogs.services import request_log_relabel
from routing.models import Route
from routing.services import route_utterance_add

SHORT_TEXT_CHARS = 80

# How a route's history names the admin's actions on logged requests that teach it examples.
AUDIT_ADMIN_RELABEL = f"{AUDIT_ADMIN}: re-labelled request"
AUDIT_ADMIN_EXAMPLES = f"{AUDIT_ADMIN}: request added to the examples"


# Below this many rows an exact COUNT(*) is cheap, and the planner's estimate of a small or
# never-analysed table is unreliable.
ESTIMATE_COUNT_FROM_ROWS = 100_000


class EstimatedCountPaginator(Paginator):
    """Counts an unfiltered PostgreSQL list from the planner's statistics.

    COUNT(*) over millions of rows is the slowest part of an unfiltered changelist and
    the exact figure buys nothing; filtered lists are counted exactly. An estimate can be
    a little off, which only matters on the very last page.
    """

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if isinstance(qs, QuerySet) and not qs.query.where:
            connection = connections[qs.db]
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                        [connection.ops.quote_name(qs.model._meta.db_table)],
                    )
                    row = cursor.fetchone()
                if row and row[0] >= ESTIMATE_COUNT_FROM_ROWS:
                    return int(row[0])
        return super().count


class RelabelForm(forms.Form):
    route = forms.ModelChoiceField(
        queryset=Route.objects.filter(enabled=True),
        # No route is picked for the admin: the first one (Emergency) would be a silent default.
        empty_label="Choose the right route…",
        label="The right route",
        help_text="The request texts are added to this route's example utterances.",
    )


class FeedbackFilter(admin.SimpleListFilter):
    title = "feedback"
    parameter_name = "feedback"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("helpful", "Helpful"),
            ("not_helpful", "Not helpful (review for misroutes)"),
            ("none", "No feedback"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[RequestLog]
    ) -> QuerySet[RequestLog]:
        match self.value():
            case "helpful":
                return queryset.filter(feedback_helpful=True)
            case "not_helpful":
                # Matches the partial index on negative feedback.
                return queryset.filter(feedback_helpful=False)
            case "none":
                return queryset.filter(feedback_helpful__isnull=True)
        return queryset


def _ms(value: float | None, decimals: int) -> str | None:
    return None if value is None else f"{value:,.{decimals}f} ms"


class AlertStateFilter(admin.SimpleListFilter):
    title = "Slack alert"
    parameter_name = "alert"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("any", "Any alert"), *AlertState.choices]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[RequestLog]
    ) -> QuerySet[RequestLog]:
        value = self.value()
        if value is None:
            return queryset
        alerts = Alert.objects.filter(request=OuterRef("pk"))
        if value != "any":
            alerts = alerts.filter(state=value)
        return queryset.filter(Exists(alerts))


class AlertInline(admin.TabularInline):
    """The request's Slack alerts and how their delivery went (written by the worker)."""

    model = Alert
    extra = 0
    can_delete = False
    fields = ("kind", "state", "tries", "queued_at", "next_try_at", "sent_at", "last_error")
    readonly_fields = fields
    ordering = ("queued_at", "pk")

    def has_add_permission(self, request: HttpRequest, obj: RequestLog | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RequestLog | None = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: RequestLog | None = None) -> bool:
        return request.user.has_perm("requestlogs.view_requestlog")


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    # What staff scan for comes first and fits a 1,366 px screen with the filters open
    # (tests/requestlogs/test_admin_browser.py): when, what, route, status, total time,
    # helpful. The other timings share one narrow column; the detail page has them all.
    list_display = (
        "when",
        "short_text",
        "route",
        "status_badge",
        "total_time",
        "feedback",
        "location",
        "routing_how",
        "timing_breakdown",
    )
    list_display_links = ("when", "short_text")

    class Media:
        css = {"all": ("clubos/admin.css",)}
        # The detail page's answer, formatted by the console's own module.
        js = (Script("clubos/requestlog-detail.js", type="module"),)

    list_filter = (
        "route",
        ("corrected_route", admin.RelatedOnlyFieldListFilter),
        "status",
        "routing_source",
        "possible_emergency",
        "cached",
        FeedbackFilter,
        "escalated",
        AlertStateFilter,
        "channel",
    )
    inlines = (AlertInline,)
    list_select_related = ("route",)
    date_hierarchy = "created_at"
    # A request id (X-Request-ID, the JSON log line's request_id) finds its row; a term that
    # is not a UUID skips that lookup.
    search_fields = ("id__exact", "text", "location", "answer")
    search_help_text = "Searches the request id (X-Request-ID), text, location and answer."
    ordering = ("-created_at",)
    list_per_page = 50
    # The second COUNT(*) (of the unfiltered table) is pure cost on a big log.
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    actions = ("relabel", "add_to_route_examples")

    fieldsets = (
        (
            "Request",
            {
                "fields": (
                    "id",
                    "created_at",
                    "finished_at",
                    "user",
                    "channel",
                    "location",
                    "requested_route",
                    "text",
                )
            },
        ),
        (
            "Routing",
            {
                "fields": (
                    "route",
                    "routing_source",
                    "confidence_pct",
                    "possible_emergency",
                    "corrected_route",
                    "corrected_at",
                )
            },
        ),
        (
            "Answer",
            {
                "fields": (
                    "status_badge",
                    "answer_formatted",
                    "error",
                    "cached",
                    "backend",
                    "model",
                    "tokens_in",
                    "tokens_out",
                    "upstream_calls",
                )
            },
        ),
        ("Timings", {"fields": ("routing_time", "ttft_time", "assistant_time", "total_time")}),
        (
            "Feedback & escalation",
            {
                "fields": (
                    "feedback_text",
                    "feedback_comment",
                    "feedback_at",
                    "escalated",
                    "escalated_at",
                )
            },
        ),
    )
    readonly_fields = (
        *(f.name for f in RequestLog._meta.fields),
        "confidence_pct",
        "status_badge",
        "routing_time",
        "ttft_time",
        "assistant_time",
        "total_time",
        "feedback_text",
        "answer_formatted",
    )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard),
                name="requestlogs_requestlog_dashboard",
            ),
            *super().get_urls(),
        ]

    def dashboard(self, request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
        return dashboard_view(request, self.admin_site)

    # --- Read-only: the pipeline writes these rows, people only read them ------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RequestLog | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: RequestLog | None = None) -> bool:
        # Deleting history is a data-retention decision, not a staff task.
        return request.user.is_active and request.user.is_superuser

    def has_relabel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("routing.change_route")

    # --- Columns --------------------------------------------------------------------------

    @admin.display(description="text")
    def short_text(self, obj: RequestLog) -> SafeString:
        text = " ".join(obj.text.split())
        short = text if len(text) <= SHORT_TEXT_CHARS else text[: SHORT_TEXT_CHARS - 1] + "…"
        return format_html('<span title="{}">{}</span>', text[:1000], short)

    @admin.display(description="time", ordering="created_at")
    def when(self, obj: RequestLog) -> SafeString:
        moment = timezone.localtime(obj.created_at)
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            moment.isoformat(),
            moment.strftime("%Y-%m-%d %H:%M:%S %Z"),
            moment.strftime("%Y-%m-%d %H:%M"),
        )

    @admin.display(description="answer")
    def answer_formatted(self, obj: RequestLog) -> SafeString:
        # Plain, escaped text in the page; clubos/requestlog-detail.js formats it as the
        # console does (bold, lists, line breaks), and without script it reads as written.
        return format_html('<div class="formatted-answer" data-format>{}</div>', obj.answer)

    @admin.display(description="routed by", ordering="routing_source")
    def routing_how(self, obj: RequestLog) -> str:
        if not obj.routing_source:
            return "—"
        confidence = "" if obj.confidence is None else f" · {obj.confidence:.0%}"
        return f"{obj.get_routing_source_display()}{confidence}"

    @admin.display(description="routing · TTFT · assistant")
    def timing_breakdown(self, obj: RequestLog) -> SafeString:
        return format_html(
            '<span class="timing-breakdown">{} · {} · {}</span>',
            _ms(obj.routing_ms, 1) or "—",
            _ms(obj.ttft_ms, 0) or "—",
            _ms(obj.assistant_ms, 0) or "—",
        )

    @admin.display(description="confidence", ordering="confidence")
    def confidence_pct(self, obj: RequestLog) -> str | None:
        return None if obj.confidence is None else f"{obj.confidence:.0%}"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: RequestLog) -> SafeString:
        # Coloured by a class (clubos/admin.css): the Content Security Policy refuses a
        # style attribute.
        return format_html(
            '<strong class="status-badge status-badge--{}">{}</strong>',
            obj.status,
            obj.get_status_display(),
        )

    @admin.display(description="helpful", boolean=True, ordering="feedback_helpful")
    def feedback(self, obj: RequestLog) -> bool | None:
        return obj.feedback_helpful

    @admin.display(description="feedback")
    def feedback_text(self, obj: RequestLog) -> str:
        if obj.feedback_helpful is None:
            return "No feedback"
        return "Helpful" if obj.feedback_helpful else "Not helpful"

    # Routing is sub-millisecond for rules and local, so it keeps one decimal.
    @admin.display(description="routing", ordering="routing_ms")
    def routing_time(self, obj: RequestLog) -> str | None:
        return _ms(obj.routing_ms, 1)

    @admin.display(description="TTFT", ordering="ttft_ms")
    def ttft_time(self, obj: RequestLog) -> str | None:
        return _ms(obj.ttft_ms, 0)

    @admin.display(description="assistant", ordering="assistant_ms")
    def assistant_time(self, obj: RequestLog) -> str | None:
        return _ms(obj.assistant_ms, 0)

    @admin.display(description="total", ordering="total_ms")
    def total_time(self, obj: RequestLog) -> str | None:
        return _ms(obj.total_ms, 0)

    # --- Actions --------------------------------------------------------------------------

    @admin.action(
        description="Re-label: these should have gone to another route (teaches the router)",
        permissions=["relabel"],
    )
    def relabel(
        self, request: HttpRequest, queryset: QuerySet[RequestLog]
    ) -> TemplateResponse | None:
        # Two steps on one URL: the action first shows a route picker; its form posts back
        # here with "apply" and the same selection.
        form = RelabelForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            route = form.cleaned_data["route"]
            added = sum(
                1
                for log in queryset
                if request_log_relabel(
                    log=log, route=route, actor=request.user, via=AUDIT_ADMIN_RELABEL
                )
            )
            self.message_user(
                request,
                f"{queryset.count()} request(s) re-labelled as {route.name}; {added} new "
                "example(s) added. The router learns them on its next request.",
                messages.SUCCESS,
            )
            return None
        return TemplateResponse(
            request,
            "admin/requestlogs/requestlog/relabel.html",
            {
                **self.admin_site.each_context(request),
                "title": "Re-label requests",
                "opts": self.model._meta,
                "form": form,
                "logs": queryset.select_related("route"),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )

    @admin.action(
        description="Add the request text to its route's example utterances",
        permissions=["relabel"],
    )
    def add_to_route_examples(self, request: HttpRequest, queryset: QuerySet[RequestLog]) -> None:
        # Only for requests that were answered well by the route they went to: the text
        # becomes training data for the router.
        added = skipped = 0
        for log in queryset.select_related("route"):
            if log.route is not None and route_utterance_add(
                route=log.route, text=log.text, actor=request.user, via=AUDIT_ADMIN_EXAMPLES
            ):
                added += 1
            else:
                skipped += 1
        level = messages.SUCCESS if added else messages.WARNING
        self.message_user(
            request,
            f"{added} example(s) added; {skipped} skipped (no route, or already an example).",
            level,
        )
