"""The process's connections to the model's server, shared by the router and the backends.

One client per process keeps its connection pool warm across requests: ``openai_client()``
(the SDK's) for the LLM router, which asks from a thread, and for the event loop that
streams answers ``openai_async_channel()``: that client's address, key and headers over one
aiohttp session per loop (its connections belong to that loop; a server worker has one
loop), opened at start-up. The SDK's own retries are switched off (``max_retries=0``):
ClubOS has exactly one retry loop, in ``assistants.services``, bounded by the request's
deadline. Timeouts are passed per call.
"""

import asyncio
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from openai import OpenAI

_client: OpenAI | None = None
_channels: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, UpstreamChannel]" = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()

# Connect fast or fail fast; per-call read timeouts come from the request's deadline.
DEFAULT_TIMEOUT_S = 15.0
CONNECTION_LIMIT = 1000


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


@dataclass(frozen=True, slots=True)
class UpstreamChannel:
    """An event loop's HTTP connections to the model's server, and what every call sends.

    The streamed assistant call is the one upstream call on a request's path, so how it is
    sent is part of every request's overhead. Through the SDK's async client (its typed
    parameters' transform, httpx2, then its aiohttp transport) building and sending it
    cost 0.7-0.9 ms of CPU per call; the same request straight through aiohttp (the
    library under the SDK's transport) 0.2-0.3 ms (bench/README.md). The channel takes the
    address, key and headers from the process's OpenAI client, so both reach the same
    server the same way; what the answer's events mean stays in the backends.
    """

    session: aiohttp.ClientSession
    base_url: str
    headers: Mapping[str, str]
    for_one_call: bool = False
    """Made for one call on a loop the server did not open a channel on (a test client's):
    the caller closes it."""

    def url(self, path: str) -> str:
        return self.base_url + path


def _channel_new(client: OpenAI, *, for_one_call: bool) -> UpstreamChannel:
    headers = {k: v for k, v in client.default_headers.items() if isinstance(v, str)}
    headers.update(
        {
            "Authorization": f"Bearer {client.api_key}",
            "Accept": "text/event-stream",
            "X-Stainless-Async": "async:asyncio",
        }
    )
    session = aiohttp.ClientSession(
        # As many connections as streams a worker carries at once (the SDK's limit).
        connector=aiohttp.TCPConnector(limit=CONNECTION_LIMIT),
        # Bodies are read as they arrive: no buffering or decompression to undo.
        auto_decompress=False,
    )
    return UpstreamChannel(
        session=session,
        base_url=str(client.base_url).rstrip("/") + "/",
        headers=headers,
        for_one_call=for_one_call,
    )


def openai_async_channel() -> UpstreamChannel:
    """The running event loop's channel, opened when the server started
    (``openai_async_channel_open``); on a loop without one, a channel for one call."""
    channel = _channels.get(asyncio.get_running_loop())
    if channel is not None:
        return channel
    # Raises UpstreamNotConfigured without a key.
    return _channel_new(openai_client(), for_one_call=True)


async def openai_async_channel_open(*, timeout_s: float) -> None:
    """Open the running loop's channel and its first connection to the model's server (a
    models list), before the first request needs it (the server's start-up)."""
    loop = asyncio.get_running_loop()
    client = openai_client()
    with _lock:
        channel = _channels.get(loop)
        if channel is None:
            channel = _channels[loop] = _channel_new(client, for_one_call=False)
    async with channel.session.get(
        channel.url("models"),
        headers={**channel.headers, "Accept": "application/json"},
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as response:
        await response.read()
        response.raise_for_status()


async def openai_async_channel_close() -> None:
    """Close the running loop's channel (the server's shutdown), with its connections."""
    with _lock:
        channel = _channels.pop(asyncio.get_running_loop(), None)
    if channel is not None:
        await channel.session.close()


def openai_client_reset() -> None:
    """Forget the clients, so the next call builds them from the current settings."""
    global _client
    with _lock:
        old, _client = _client, None
        # A channel can only be closed on its own loop; dropping it is enough.
        _channels.clear()
    if old is not None:
        old.close()


@receiver(setting_changed)
def _reset_on_setting_change(*, setting: str, **kwargs: object) -> None:
    if setting in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}:
        openai_client_reset()
