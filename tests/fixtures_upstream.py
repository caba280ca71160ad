"""Pytest plugin: one fake OpenAI upstream per test session.

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.fixtures_upstream"]``.
Point clients at ``fake_openai.base_url``; the server is a real HTTP server on loopback.
"""

from collections.abc import Iterator

import pytest

from devtools.fake_openai import FakeOpenAI


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """The session's fake upstream; prefer ``fake_openai``, which also resets it."""
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> FakeOpenAI:
    """The session's fake upstream with no recorded calls and default behaviour."""
    fake_openai_server.reset()
    return fake_openai_server
