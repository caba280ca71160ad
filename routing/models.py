from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from config.audit import AuditedHistoricalRecords


class AssistantBackendName(models.TextChoices):
    DEFAULT = "", "Default (from the environment)"
    OPENAI_RESPONSES = "openai-responses", "OpenAI Responses API"
    OPENAI_CHAT = "openai-chat", "Chat Completions (OpenAI-compatible servers)"
    OFFLINE = "offline", "Offline (answers from the SOP entries)"


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class Route(models.Model):
    """A specialised assistant a request can be routed to. Slugs are part of the API."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(help_text="The route's scope: what belongs here.")
    enabled = models.BooleanField(default=True)
    is_emergency = models.BooleanField(
        default=False,
        help_text="Safety route: its preamble is shown at once, Slack is alerted, never cached.",
    )
    safety_preamble = models.TextField(
        blank=True, help_text="Shown to the person immediately, before the assistant answers."
    )
    instructions = models.TextField(help_text="The assistant's instructions for this route.")
    backend = models.CharField(
        max_length=32, choices=AssistantBackendName.choices, default="", blank=True
    )
    model = models.CharField(
        max_length=100, blank=True, help_text="Empty uses the configured default model."
    )
    timeout_s = models.FloatField(
        "timeout override (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1.0), MaxValueValidator(120.0)],
        help_text="Empty uses the configured assistant timeout.",
    )
    keywords = models.TextField(
        blank=True,
        help_text="One phrase per line. The rules strategy matches them; on an emergency "
        "route any match forces the route.",
    )
    utterances = models.TextField(
        blank=True, help_text="Example requests, one per line: what the router learns from."
    )
    priority = models.PositiveSmallIntegerField(
        default=100, help_text="Lower wins when rules match more than one route."
    )
    version = models.PositiveIntegerField(
        default=1, editable=False, help_text="Bumped when instructions, model or backend change."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Who changed what, old -> new (config.audit); updated_at only repeats each record's date.
    history = AuditedHistoricalRecords(
        verbose_name="route change",
        verbose_name_plural="route changes",
        excluded_fields=["updated_at"],
    )

    class Meta:
        ordering = ["priority", "slug"]

    def __str__(self) -> str:
        return self.name

    @property
    def keyword_list(self) -> list[str]:
        return _lines(self.keywords)

    @property
    def utterance_list(self) -> list[str]:
        return _lines(self.utterances)


class KnowledgeEntry(models.Model):
    """A standard operating procedure or fact for a route; the offline backend answers from these."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="knowledge")
    title = models.CharField(max_length=200)
    body = models.TextField(help_text="The procedure or answer, as staff should read it.")
    keywords = models.TextField(
        blank=True, help_text="One per line: words that make this entry the right answer."
    )
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = AuditedHistoricalRecords(
        verbose_name="knowledge entry change",
        verbose_name_plural="knowledge entry changes",
        excluded_fields=["updated_at"],
    )

    class Meta:
        ordering = ["route", "title"]
        verbose_name = "knowledge entry"
        verbose_name_plural = "knowledge entries"

    def __str__(self) -> str:
        return self.title

    @property
    def keyword_list(self) -> list[str]:
        return _lines(self.keywords)
