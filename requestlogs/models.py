import uuid

from django.conf import settings
from django.db import models


class RequestStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    OK = "ok", "OK"
    CACHED = "cached", "Cached"
    TIMEOUT = "timeout", "Timeout"
    ERROR = "error", "Error"
    ESCALATED = "escalated", "Escalated"
    ABANDONED = "abandoned", "Abandoned"


class RoutingSource(models.TextChoices):
    MANUAL = "manual", "Chosen by the person"
    RULES = "rules", "Keyword rules"
    LOCAL = "local", "Local classifier"
    LLM = "llm", "LLM router"
    DEFAULT = "default", "Default route"


class AlertKind(models.TextChoices):
    EMERGENCY = "emergency", "Emergency"
    FAILURE = "failure", "Assistant failure"
    NEGATIVE_FEEDBACK = "negative_feedback", "Not helpful"
    ESCALATION = "escalation", "Escalation"


class AlertState(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    NO_CHANNEL = "no_channel", "No channel configured"


class Channel(models.TextChoices):
    WEB = "web", "Web console"
    API = "api", "API"


class RequestLog(models.Model):
    """One durable row per accepted request, inserted before any routing work."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: reqlog_time_figures (below) begins with it and serves the
    # admin's ordering and date filters as well as the timing dashboard.
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # No index of their own: reqlog_user_time and reqlog_route_time (below) begin with
    # these columns and serve their lookups. Every index is written on both of a
    # request's writes (the final UPDATE changes indexed columns, so it is never HOT).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="request_logs",
        db_index=False,
    )
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.API)
    location = models.CharField(max_length=100, blank=True)
    text = models.TextField()
    requested_route = models.CharField(
        max_length=50, default="auto", help_text="What the person asked for: 'auto' or a slug."
    )
    route = models.ForeignKey(
        "routing.Route",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    routing_source = models.CharField(max_length=8, choices=RoutingSource.choices, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    possible_emergency = models.BooleanField(
        default=False,
        help_text="Routing doubted it was not an emergency: the person was offered a one-tap "
        "switch to Emergency (System configuration, emergency policy).",
    )
    status = models.CharField(
        max_length=10, choices=RequestStatus.choices, default=RequestStatus.RECEIVED
    )
    answer = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="What went wrong, for staff and admins.")
    backend = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=100, blank=True)
    tokens_in = models.PositiveIntegerField(null=True, blank=True)
    tokens_out = models.PositiveIntegerField(null=True, blank=True)
    upstream_calls = models.PositiveSmallIntegerField(
        default=0,
        help_text="Model calls this request made: routing and assistant, retries included.",
    )
    cached = models.BooleanField(default=False)
    escalated = models.BooleanField(default=False)
    escalated_at = models.DateTimeField(null=True, blank=True)
    corrected_route = models.ForeignKey(
        "routing.Route",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The route this request should have gone to, set when an admin re-labels it.",
    )
    corrected_at = models.DateTimeField(null=True, blank=True)
    feedback_helpful = models.BooleanField(null=True, blank=True)
    feedback_comment = models.TextField(blank=True)
    feedback_at = models.DateTimeField(null=True, blank=True)
    routing_ms = models.FloatField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    assistant_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["route", "created_at"], name="reqlog_route_time"),
            models.Index(fields=["status", "created_at"], name="reqlog_status_time"),
            models.Index(fields=["user", "created_at"], name="reqlog_user_time"),
            models.Index(fields=["routing_source", "created_at"], name="reqlog_source_time"),
            models.Index(
                fields=["created_at"],
                name="reqlog_negative_feedback",
                condition=models.Q(feedback_helpful=False),
            ),
            # The timing dashboard's scan of a period (requestlogs.stats): every column its
            # figures read, so PostgreSQL answers from this index alone (an index-only scan)
            # instead of reading the wide rows (text and answer) of the whole period.
            models.Index(
                fields=["created_at"],
                include=[
                    "route",
                    "status",
                    "routing_source",
                    "cached",
                    "escalated",
                    "feedback_helpful",
                    "routing_ms",
                    "ttft_ms",
                    "assistant_ms",
                    "total_ms",
                ],
                name="reqlog_time_figures",
            ),
        ]
        permissions = [("view_dashboard", "Can view the timing dashboard")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.text[:60]}"


class Alert(models.Model):
    """One Slack alert about a request, and how its delivery went.

    Written in the transaction that queues its task (``requestlogs.services.alert_queue``),
    so an alert that was promised is never lost: while it is ``queued`` and overdue, the
    worker's sweep queues it again (a worker killed in the middle of sending it).
    """

    request = models.ForeignKey(RequestLog, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    state = models.CharField(max_length=12, choices=AlertState.choices, default=AlertState.QUEUED)
    detail = models.TextField(blank=True, help_text="The note, comment or error it carries.")
    tries = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    queued_at = models.DateTimeField()
    next_try_at = models.DateTimeField(
        null=True, blank=True, help_text="While queued: when its next try is due."
    )
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["queued_at", "pk"]
        indexes = [
            # The sweep's lookup of overdue alerts: only the few queued ones are indexed.
            models.Index(
                fields=["next_try_at"],
                name="alert_queued_due",
                condition=models.Q(state="queued"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} alert: {self.get_state_display()}"
