from collections.abc import Iterator
from pathlib import Path

import pytest

# DJANGO_SECRET_KEY is set by pytest-env from pyproject.toml, before Django loads. Django's
# guard against synchronous database calls on an event loop is on (only the browser tests,
# whose Playwright runs a loop in the test's thread, lift it).

pytest_plugins = ["tests.fixtures_upstream", "tests.fixtures_slack", "tests.fixtures_asgi"]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Django deletes the SQLite test database's file, not the WAL files (or seed_demo's
    kept password) beside it."""
    from django.conf import settings

    if not settings.configured or "sqlite" not in settings.DATABASES["default"]["ENGINE"]:
        return
    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name:
        for suffix in ("-wal", "-shm", ".demo-login"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker) -> Iterator[None]:
    """pytest-django's, with PostgreSQL's test database left by every session at the end.

    Threads that served requests (a live server's, asgiref's executors) keep connections of
    their own, which the pool cannot close while they hold them; left open, they stop the
    test database from being dropped ("is being accessed by other users").
    """
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True)
def _clean_process_state() -> Iterator[None]:
    """Each test starts with empty caches (shared and in-process) and closed circuit breakers."""
    from django.core.cache import cache

    from accounts.authentication import api_token_forget_all
    from assistants.breaker import breakers_reset
    from config.caching import SharedSnapshot

    cache.clear()
    SharedSnapshot.forget_all()
    api_token_forget_all()
    breakers_reset()
    yield
    SharedSnapshot.forget_all()
    breakers_reset()


@pytest.fixture(autouse=True)
def _static_files_without_manifest(settings):
    """Pages name static files; tests run from a checkout where collectstatic never ran."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def openai_upstream(fake_openai, settings):
    """Point ClubOS at the fake OpenAI server, through the real SDK, Responses API backend."""
    settings.OPENAI_API_KEY = "test-key"
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.ASSISTANT_BACKEND = "openai-responses"
    return fake_openai
