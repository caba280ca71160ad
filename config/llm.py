"""The process's one OpenAI client, shared by the LLM router and the OpenAI backends.

One client per process keeps its connection pool warm across requests. The SDK's own
retries are switched off (``max_retries=0``): ClubOS has exactly one retry loop, in
``assistants.services``, bounded by the request's deadline. Timeouts are passed per call.
"""

import threading

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from openai import OpenAI

_client: OpenAI | None = None
_lock = threading.Lock()

# Connect fast or fail fast; per-call read timeouts come from the request's deadline.
DEFAULT_TIMEOUT_S = 15.0


class UpstreamNotConfigured(RuntimeError):
    """No OPENAI_API_KEY: the OpenAI-backed parts cannot run."""


def openai_configured() -> bool:
    return bool(settings.OPENAI_API_KEY)


def openai_client() -> OpenAI:
    """The shared client, created on first use (or at start-up by ``openai_client_warm``)."""
    global _client
    if _client is not None:
        return _client
    if not openai_configured():
        raise UpstreamNotConfigured("OPENAI_API_KEY is not set")
    with _lock:
        if _client is None:
            _client = OpenAI(
                api_key=settings.OPENAI_API_KEY,
                base_url=settings.OPENAI_BASE_URL,
                timeout=DEFAULT_TIMEOUT_S,
                max_retries=0,
            )
        return _client


def openai_client_reset() -> None:
    """Forget the client, so the next call builds one from the current settings."""
    global _client
    with _lock:
        old, _client = _client, None
    if old is not None:
        old.close()


@receiver(setting_changed)
def _reset_on_setting_change(*, setting: str, **kwargs: object) -> None:
    if setting in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}:
        openai_client_reset()
