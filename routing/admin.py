"""Routes and their knowledge in the admin. Every write goes through ``routing.services``,
so versions are bumped and the cached route catalog is invalidated exactly as the API does.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from config.admin_history import ChangeLogAdmin, HistoryShownAdmin
from config.audit import AUDIT_ADMIN
from config.selectors import system_config_get
from routing.models import KnowledgeEntry, Route
from routing.services import (
    knowledge_entry_delete,
    knowledge_entry_save,
    route_delete,
    route_save,
    route_update,
)

# The default routes' slugs are part of the public API (clients send them as ``route``):
# they are disabled, never deleted or renamed.
PROTECTED_SLUGS = frozenset({"emergency", "booking", "tech", "brand"})


def _is_protected(route: Route) -> bool:
    # The configured fallback route is load-bearing too: routing ends there when unsure.
    return route.slug in PROTECTED_SLUGS or route.slug == system_config_get().default_route_slug


class KnowledgeEntryInline(admin.StackedInline):
    model = KnowledgeEntry
    fields = ("title", "body", "keywords", "enabled")
    extra = 0
    show_change_link = True


@admin.register(Route)
class RouteAdmin(HistoryShownAdmin):
    list_display = (
        "name",
        "slug",
        "enabled",
        "is_emergency",
        "backend",
        "model_or_default",
        "timeout_s",
        "priority",
        "utterance_count",
        "version",
        "updated_at",
    )
    list_filter = ("enabled", "is_emergency", "backend")
    list_editable = ("enabled",)
    search_fields = ("slug", "name", "description", "utterances")
    ordering = ("priority", "slug")
    readonly_fields = ("version", "created_at", "updated_at")
    fieldsets = (
        (
            "Identity",
            {"fields": ("name", "slug", "enabled", "version", "created_at", "updated_at")},
        ),
        ("Scope", {"fields": ("description",)}),
        ("Assistant", {"fields": ("instructions", "backend", "model", "timeout_s")}),
        ("Routing", {"fields": ("keywords", "utterances", "priority")}),
        ("Emergency", {"fields": ("is_emergency", "safety_preamble")}),
    )
    inlines = (KnowledgeEntryInline,)
    actions = ("enable_routes", "disable_routes")
    # The history's diff leaves out fields the form cannot edit; the version is one to see.
    history_list_display = ["version"]

    @admin.display(description="model", ordering="model")
    def model_or_default(self, obj: Route) -> str:
        return obj.model or "default"

    @admin.display(description="utterances")
    def utterance_count(self, obj: Route) -> int:
        return len(obj.utterance_list)

    def get_readonly_fields(self, request: HttpRequest, obj: Route | None = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        # Renaming a default slug would break every client that sends it.
        if obj is not None and obj.slug in PROTECTED_SLUGS:
            fields += ("slug",)
        return fields

    def has_delete_permission(self, request: HttpRequest, obj: Route | None = None) -> bool:
        if obj is not None and _is_protected(obj):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(
        self,
        request: HttpRequest,
        action_location: admin.ActionLocation = admin.ActionLocation.CHANGE_LIST,
    ) -> dict[str, Any]:
        actions = super().get_actions(request, action_location=action_location)
        # The bulk delete action checks permission without looking at the rows, so it would
        # let the default routes go; disabling is the way to retire a route.
        actions.pop("delete_selected", None)
        return actions

    def save_model(
        self, request: HttpRequest, obj: Route, form: forms.ModelForm, change: bool
    ) -> None:
        # ``changed`` tells the service whether the answers change (and the version with them).
        route_save(route=obj, changed=set(form.changed_data), actor=request.user, via=AUDIT_ADMIN)

    def save_formset(
        self, request: HttpRequest, form: forms.ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        if formset.model is not KnowledgeEntry:
            super().save_formset(request, form, formset, change)
            return
        entries = formset.save(commit=False)
        for entry in formset.deleted_objects:
            knowledge_entry_delete(entry=entry, actor=request.user, via=AUDIT_ADMIN)
        for entry in entries:
            knowledge_entry_save(entry=entry, actor=request.user, via=AUDIT_ADMIN)
        formset.save_m2m()

    def delete_model(self, request: HttpRequest, obj: Route) -> None:
        route_delete(route=obj, actor=request.user, via=AUDIT_ADMIN)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        for route in queryset:
            if not _is_protected(route):
                self.delete_model(request, route)

    @admin.action(description="Enable selected routes", permissions=["change"])
    def enable_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable selected routes", permissions=["change"])
    def disable_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[Route], *, enabled: bool
    ) -> None:
        changed = 0
        for route in queryset.filter(enabled=not enabled):
            route_update(route=route, actor=request.user, via=AUDIT_ADMIN, enabled=enabled)
            changed += 1
        state = "enabled" if enabled else "disabled"
        self.message_user(request, f"{changed} route(s) {state}.", messages.SUCCESS)


@admin.register(KnowledgeEntry)
class KnowledgeEntryAdmin(HistoryShownAdmin):
    list_display = ("title", "route", "enabled", "updated_at")
    list_filter = ("route", "enabled")
    list_select_related = ("route",)
    search_fields = ("title", "body", "keywords")
    fields = ("route", "title", "body", "keywords", "enabled", "updated_at")
    readonly_fields = ("updated_at",)

    def save_model(
        self, request: HttpRequest, obj: KnowledgeEntry, form: forms.ModelForm, change: bool
    ) -> None:
        knowledge_entry_save(entry=obj, actor=request.user, via=AUDIT_ADMIN)

    def delete_model(self, request: HttpRequest, obj: KnowledgeEntry) -> None:
        knowledge_entry_delete(entry=obj, actor=request.user, via=AUDIT_ADMIN)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[KnowledgeEntry]) -> None:
        # One by one through the service, so every affected route's version moves.
        for entry in queryset.select_related("route"):
            knowledge_entry_delete(entry=entry, actor=request.user, via=AUDIT_ADMIN)


admin.site.register(Route.history.model, ChangeLogAdmin)
admin.site.register(KnowledgeEntry.history.model, ChangeLogAdmin)
