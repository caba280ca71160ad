"""Pytest plugin: a fake Slack incoming webhook on loopback.

Load it from ``tests/conftest.py`` with ``pytest_plugins = [..., "tests.fixtures_slack"]``.
"""

from collections.abc import Iterator

import pytest

from devtools.slack_server import FakeSlack


@pytest.fixture(scope="session")
def slack_server_session() -> Iterator[FakeSlack]:
    server = FakeSlack().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def slack_server(slack_server_session: FakeSlack) -> FakeSlack:
    """The fake webhook with nothing recorded, answering 200; post to ``slack_server.url``."""
    slack_server_session.reset()
    return slack_server_session
