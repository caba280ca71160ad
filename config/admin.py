"""The system configuration in the admin: one row, edited in place, saved through the service."""

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from rest_framework.settings import api_settings

from config.admin_history import ChangeLogAdmin, HistoryShownAdmin
from config.audit import AUDIT_ADMIN, secret_mask
from config.models import SystemConfig
from config.selectors import system_config_load
from config.services import system_config_update


class SystemConfigForm(forms.ModelForm):
    class Meta:
        model = SystemConfig
        fields = (
            "routing_strategy",
            "confidence_threshold",
            "llm_routing_enabled",
            "llm_routing_model",
            "emergency_policy",
            "default_route_slug",
            "default_assistant_model",
            "assistant_timeout_s",
            "assistant_retries",
            "response_cache_enabled",
            "response_cache_ttl_s",
            "slack_webhook_url",
            "slack_on_emergency",
            "slack_on_failure",
            "slack_on_negative_feedback",
            "slack_on_escalation",
            "throttle_submit_rate",
            "throttle_token_address_rate",
            "throttle_token_username_rate",
        )
        labels = {
            "llm_routing_enabled": "LLM routing enabled",
            "llm_routing_model": "LLM routing model",
            "slack_webhook_url": "Slack webhook URL",
        }
        # Help for the fields whose model definition has none, so every setting explains
        # itself where it is edited.
        help_texts = {
            "llm_routing_model": "The model the LLM router asks which route fits.",
            "response_cache_enabled": "Serve an identical earlier answer from the cache "
            "(never for emergencies). The key covers route, instructions version, model and "
            "the normalised text, so editing a route retires its cached answers.",
            "response_cache_ttl_s": "How long a cached answer may be served.",
            "slack_on_emergency": "Alert when a request is routed to an emergency route.",
            "slack_on_failure": "Alert when the assistant times out or fails.",
            "slack_on_negative_feedback": "Alert when someone marks an answer not helpful.",
            "slack_on_escalation": "Alert when a request is escalated to a person.",
        }


@admin.register(SystemConfig)
class SystemConfigAdmin(HistoryShownAdmin):
    form = SystemConfigForm
    fieldsets = (
        (
            "Routing",
            {
                "fields": (
                    "routing_strategy",
                    "confidence_threshold",
                    "llm_routing_enabled",
                    "llm_routing_model",
                    "emergency_policy",
                    "default_route_slug",
                )
            },
        ),
        (
            "Assistant",
            {"fields": ("default_assistant_model", "assistant_timeout_s", "assistant_retries")},
        ),
        ("Response cache", {"fields": ("response_cache_enabled", "response_cache_ttl_s")}),
        (
            "Slack",
            {
                "fields": (
                    "slack_webhook_url",
                    "slack_webhook_in_use",
                    "slack_on_emergency",
                    "slack_on_failure",
                    "slack_on_negative_feedback",
                    "slack_on_escalation",
                )
            },
        ),
        (
            "Throttling",
            {
                "description": "Requests beyond a rate get 429 with Retry-After. Changes apply "
                "on every worker within a second.",
                "fields": (
                    "throttle_submit_rate",
                    "throttle_token_address_rate",
                    "throttle_token_username_rate",
                    "throttle_defaults",
                ),
            },
        ),
        (None, {"fields": ("updated_at",)}),
    )
    readonly_fields = (
        "slack_webhook_in_use",
        "slack_webhook_masked",
        "throttle_defaults",
        "updated_at",
    )
    save_on_top = False

    def get_fieldsets(
        self, request: HttpRequest, obj: SystemConfig | None = None
    ) -> list[tuple[str | None, dict[str, Any]]]:
        fieldsets = list(super().get_fieldsets(request, obj))
        if self.has_change_permission(request, obj):
            return fieldsets
        # Read-only, the field would print the webhook URL, a credential, to someone who may
        # not change it: they see its mask, as in the history.
        return [
            (
                name,
                {
                    **options,
                    "fields": tuple(
                        "slack_webhook_masked" if field == "slack_webhook_url" else field
                        for field in options["fields"]
                    ),
                },
            )
            for name, options in fieldsets
        ]

    @admin.display(description="Slack webhook URL")
    def slack_webhook_masked(self, obj: SystemConfig) -> str:
        return secret_mask(obj.slack_webhook_url) or "—"

    @admin.display(description="Webhook in use")
    def slack_webhook_in_use(self, obj: SystemConfig) -> str:
        # Says where alerts go without printing the URL, which is a credential.
        if obj.slack_webhook_url:
            return "The URL above."
        if settings.SLACK_WEBHOOK_URL:
            return "SLACK_WEBHOOK_URL from the environment."
        return "None: no Slack alerts are sent."

    @admin.display(description="Server defaults")
    def throttle_defaults(self, obj: SystemConfig) -> str:
        # What an empty field above means, from the environment (clubos/settings.py).
        rates = api_settings.DEFAULT_THROTTLE_RATES
        return "; ".join(
            f"{label}: {rates.get(scope) or 'off'}"
            for label, scope in (
                ("submits per user", "submit"),
                ("token requests per address", "token_address"),
                ("token requests per username", "token_username"),
            )
        )

    # There is exactly one row, created by a migration: nothing to add, nothing to delete.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SystemConfig | None = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, object] | None = None
    ) -> HttpResponse:
        # A list of one row is a click nobody needs: go straight to its form.
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        row = system_config_load()
        opts = self.model._meta
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk])
        )

    def save_model(
        self, request: HttpRequest, obj: SystemConfig, form: forms.ModelForm, change: bool
    ) -> None:
        # The service validates, saves, records who changed what and drops the cached copy
        # every worker reads.
        system_config_update(config=obj, actor=request.user, via=AUDIT_ADMIN)


admin.site.register(SystemConfig.history.model, ChangeLogAdmin)
