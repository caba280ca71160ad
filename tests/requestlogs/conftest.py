"""Fixtures shared by the request tests (the API's, and the pipeline's on an event loop).

The token-authenticated client is ``api_client``, not ``client``: the console and admin
tests in this package use pytest-django's ``client`` (Django's test client), which a
fixture of that name here would replace.
"""

import asyncio
import threading
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from psycopg_pool import AsyncConnectionPool
from rest_framework.test import APIClient

from config.db_async import db_async_close, db_async_open, db_async_pool
from config.llm import openai_async_channel_close
from routing.models import Route
from tests.requestlogs.api_factories import default_routes_ensure, token_client
from tests.requestlogs.factories import UserFactory


@pytest.fixture
def routes() -> dict[str, Route]:
    """The four default routes, by slug."""
    return default_routes_ensure()


@pytest.fixture
def user() -> User:
    return UserFactory()


@pytest.fixture
def api_client(user: User) -> APIClient:
    """An API client sending ``user``'s token."""
    return token_client(user)


@pytest.fixture
def server_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in its own thread, as the ASGI server runs one."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        asyncio.run_coroutine_threadsafe(openai_async_channel_close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def server_loop_db_pool(
    server_loop: asyncio.AbstractEventLoop,
) -> Iterator[AsyncConnectionPool]:
    """``server_loop``'s own database pool, opened as a server worker opens it at start-up
    (PostgreSQL only)."""
    asyncio.run_coroutine_threadsafe(db_async_open(timeout_s=5), server_loop).result(10)

    async def get() -> AsyncConnectionPool | None:
        return db_async_pool()

    pool = asyncio.run_coroutine_threadsafe(get(), server_loop).result(5)
    assert pool is not None
    yield pool
    asyncio.run_coroutine_threadsafe(db_async_close(), server_loop).result(10)
