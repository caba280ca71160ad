"""Assistant backends by name: the route's ``backend`` field, else ``settings.ASSISTANT_BACKEND``."""

from django.conf import settings

from assistants.backends.base import (
    AssistantBackend,
    AssistantError,
    AssistantRequest,
    Completion,
    FailureKind,
    StreamEvent,
    TextDelta,
)
from assistants.backends.offline import OfflineBackend
from assistants.backends.openai_backends import OpenAIChatBackend, OpenAIResponsesBackend

BACKENDS: dict[str, type[AssistantBackend]] = {
    cls.name: cls for cls in (OpenAIResponsesBackend, OpenAIChatBackend, OfflineBackend)
}
_instances: dict[str, AssistantBackend] = {}


def backend_name_for(route_backend: str) -> str:
    return route_backend or settings.ASSISTANT_BACKEND


def get_backend(name: str) -> AssistantBackend:
    """The process's instance of the named backend."""
    try:
        return _instances[name]
    except KeyError:
        try:
            cls = BACKENDS[name]
        except KeyError:
            raise AssistantError(
                FailureKind.UNAVAILABLE, f"unknown assistant backend {name!r}"
            ) from None
        return _instances.setdefault(name, cls())


__all__ = [
    "BACKENDS",
    "AssistantBackend",
    "AssistantError",
    "AssistantRequest",
    "Completion",
    "FailureKind",
    "StreamEvent",
    "TextDelta",
    "backend_name_for",
    "get_backend",
]
