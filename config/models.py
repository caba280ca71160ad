from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from config.audit import AuditedHistoricalRecords

# DRF's rate syntax: a count per second, minute, hour or day ("60/min", "5/m", "1000/day").
throttle_rate_validator = RegexValidator(
    r"^[1-9][0-9]{0,6}/(s|sec|second|m|min|minute|h|hour|d|day)$",
    "A rate such as 60/min: a count, a slash, then s, min, hour or day.",
)


def throttle_rate_field(help_text: str) -> models.CharField:
    # Empty: the server's default from the environment (clubos/settings.py).
    return models.CharField(
        max_length=20, blank=True, validators=[throttle_rate_validator], help_text=help_text
    )


class RoutingStrategy(models.TextChoices):
    HYBRID = "hybrid", "Hybrid: rules, then local classifier, LLM only when unsure"
    LOCAL = "local", "Local classifier (no network)"
    RULES = "rules", "Keyword rules"
    LLM = "llm", "LLM router (the old way: one extra model call)"


class EmergencyPolicy(models.TextChoices):
    """What hybrid routing does when its classifier doubts the route it picked: a
    meaningful probability of Emergency that did not win, or an emergency keyword the
    classifier is sure is not one (see routing.strategies.hybrid)."""

    SWITCH = "switch", "Route as decided and show a one-tap 'This is an emergency' switch"
    ASK_LLM = "llm", "Ask the LLM router (when configured; otherwise show the switch)"
    EMERGENCY = "emergency", "Route to Emergency"


class SystemConfig(models.Model):
    """The single row of system-wide settings; read through ``system_config_get()``."""

    SINGLETON_PK = 1

    routing_strategy = models.CharField(
        max_length=16,
        choices=RoutingStrategy.choices,
        default=RoutingStrategy.HYBRID,
        help_text="How a request with route 'Auto' is routed.",
    )
    confidence_threshold = models.FloatField(
        default=0.6,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Below this confidence a routing decision is treated as unsure.",
    )
    llm_routing_enabled = models.BooleanField(
        default=True, help_text="Allow the LLM router to be asked when other strategies are unsure."
    )
    llm_routing_model = models.CharField(max_length=100, default="gpt-4.1-mini")
    emergency_policy = models.CharField(
        max_length=16,
        choices=EmergencyPolicy.choices,
        default=EmergencyPolicy.SWITCH,
        help_text="Hybrid routing, when a request might be an emergency but was not routed "
        "to one: what to do about it.",
    )
    default_route_slug = models.SlugField(
        max_length=50,
        default="brand",
        help_text="The route used when no strategy can decide.",
    )
    default_assistant_model = models.CharField(
        max_length=100,
        default="gpt-4.1-mini",
        help_text="Used by routes with no model of their own.",
    )
    assistant_timeout_s = models.FloatField(
        "assistant timeout (s)",
        default=15.0,
        validators=[MinValueValidator(1.0), MaxValueValidator(120.0)],
        help_text="Deadline for the whole assistant call, retries included.",
    )
    assistant_retries = models.PositiveSmallIntegerField(
        default=1,
        validators=[MaxValueValidator(3)],
        help_text="Retries on 429, 5xx or timeout, within the deadline.",
    )
    response_cache_enabled = models.BooleanField(default=False)
    response_cache_ttl_s = models.PositiveIntegerField("response cache TTL (s)", default=3600)
    slack_webhook_url = models.URLField(
        blank=True,
        help_text="Incoming-webhook URL; empty uses SLACK_WEBHOOK_URL from the environment.",
    )
    slack_on_emergency = models.BooleanField(default=True)
    slack_on_failure = models.BooleanField(default=True)
    slack_on_negative_feedback = models.BooleanField(default=True)
    slack_on_escalation = models.BooleanField(default=True)
    throttle_submit_rate = throttle_rate_field(
        "Submits per user, e.g. 60/min. Empty: the server default (THROTTLE_SUBMIT_RATE)."
    )
    throttle_token_address_rate = throttle_rate_field(
        "Token requests per client address, e.g. 10/min. Empty: the server default "
        "(THROTTLE_TOKEN_ADDRESS_RATE)."
    )
    throttle_token_username_rate = throttle_rate_field(
        "Token requests per username, whatever the address, e.g. 5/min. Empty: the server "
        "default (THROTTLE_TOKEN_USERNAME_RATE)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    # Who changed what, old -> new (config.audit). The webhook URL is a credential: its
    # history is masked. updated_at would only repeat each record's own date.
    history = AuditedHistoricalRecords(
        verbose_name="system configuration change",
        verbose_name_plural="system configuration changes",
        excluded_fields=["updated_at"],
        masked_fields=["slack_webhook_url"],
    )

    class Meta:
        verbose_name = "system configuration"
        verbose_name_plural = "system configuration"

    def __str__(self) -> str:
        return "System configuration"
