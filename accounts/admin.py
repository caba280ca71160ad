"""API tokens in the admin: who has which, until when; revoke any; issue one for a user.

knox's own admin lists tokens by digest and deletes them behind the services' back, and
DRF's clear-text token admin has nothing left to show (the tokens were converted to knox's
by ``accounts/migrations/0001``): both are replaced by this one.
"""

import contextlib
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.options import ActionLocation
from django.db.models import Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.authtoken.models import TokenProxy

from accounts.services import api_token_create, api_token_revoke, api_token_revoke_selected

for model in (AuthToken, TokenProxy):
    with contextlib.suppress(NotRegistered):
        admin.site.unregister(model)


class ExpiredFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "Live"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "live":
            return queryset.filter(Q(expiry__isnull=True) | Q(expiry__gt=now))
        if self.value() == "expired":
            return queryset.filter(expiry__lte=now)
        return queryset


SHOWN = ("token_key", "user", "created", "expiry")


@admin.register(AuthToken)
class AuthTokenAdmin(admin.ModelAdmin):
    list_display = ["token_key", "user", "user__is_staff", "user__is_active", "created", "expiry"]
    list_filter = [ExpiredFilter, "user__is_staff", "user__is_active", "created"]
    search_fields = ["user__username", "user__email", "token_key"]
    list_select_related = ["user"]
    date_hierarchy = "created"
    ordering = ["-created"]
    raw_id_fields = ["user"]
    actions = ["revoke_selected"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Issuing: only whose token it is (the expiry is API_TOKEN_TTL). Reading: no digest.
        return ("user",) if obj is None else SHOWN

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return () if obj is None else SHOWN

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False if obj is not None else super().has_change_permission(request, obj)

    def get_actions(
        self, request: HttpRequest, action_location: ActionLocation = ActionLocation.CHANGE_LIST
    ) -> dict[str, Any]:
        actions = super().get_actions(request, action_location)
        # "Revoke" says what deleting a token does; one action, through the service.
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Revoke selected tokens", permissions=["delete"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[AuthToken]) -> None:
        revoked = api_token_revoke_selected(tokens=queryset)
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)

    def save_model(
        self, request: HttpRequest, obj: AuthToken, form: ModelForm, change: bool
    ) -> None:
        created, key = api_token_create(user=obj.user)
        for field in ("digest", "token_key", "created", "expiry"):
            setattr(obj, field, getattr(created, field))
        obj._state.adding = False
        obj._state.db = created._state.db
        self.message_user(
            request,
            f"The new token for {obj.user} (shown this once, copy it now): {key}",
            messages.WARNING,
        )

    def delete_model(self, request: HttpRequest, obj: AuthToken) -> None:
        api_token_revoke(token=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AuthToken]) -> None:
        api_token_revoke_selected(tokens=queryset)
