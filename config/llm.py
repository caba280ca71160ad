"""The process's OpenAI clients, shared by the LLM router and the OpenAI backends.

One client per process keeps its connection pool warm across requests: ``openai_client()``
for threads (WSGI, the router), ``openai_async_client()`` for the event loop that streams
answers under ASGI (one per loop, as its connections belong to that loop; a server worker
has one loop). The async client uses the SDK's aiohttp transport: its C HTTP parser costs
a fraction of the CPU per streamed chunk. The SDK's own
retries are switched off (``max_retries=0``): ClubOS has exactly one retry loop, in
``assistants.services``, bounded by the request's deadline. Timeouts are passed per call.
"""

import asyncio
import threading
import weakref

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from openai import AsyncOpenAI, DefaultAioHttpClient, OpenAI

_client: OpenAI | None = None
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncOpenAI]" = (
    weakref.WeakKeyDictionary()
)
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


def openai_async_client() -> AsyncOpenAI:
    """The running event loop's async client, created on its first use."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is not None:
        return client
    if not openai_configured():
        raise UpstreamNotConfigured("OPENAI_API_KEY is not set")
    with _lock:
        client = _async_clients.get(loop)
        if client is None:
            client = AsyncOpenAI(
                api_key=settings.OPENAI_API_KEY,
                base_url=settings.OPENAI_BASE_URL,
                timeout=DEFAULT_TIMEOUT_S,
                max_retries=0,
                http_client=DefaultAioHttpClient(timeout=DEFAULT_TIMEOUT_S),
            )
            _async_clients[loop] = client
        return client


async def openai_async_client_close() -> None:
    """Close the running loop's client (the server's shutdown), with its connections."""
    with _lock:
        client = _async_clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.close()


def openai_client_reset() -> None:
    """Forget the clients, so the next call builds them from the current settings."""
    global _client
    with _lock:
        old, _client = _client, None
        # An async client can only be closed on its own loop; dropping it is enough.
        _async_clients.clear()
    if old is not None:
        old.close()


@receiver(setting_changed)
def _reset_on_setting_change(*, setting: str, **kwargs: object) -> None:
    if setting in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}:
        openai_client_reset()
