"""How the app is served: gunicorn's settings and Django's own ASGI handler (the server
itself, over real HTTP: test_api_stream and test_one_path)."""

import asyncio
import runpy
import threading
from pathlib import Path

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler

GUNICORN_CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


def gunicorn_settings(monkeypatch, **env: str) -> dict:
    for name in ("GUNICORN_WORKERS", "GUNICORN_BIND"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def test_gunicorn_serves_the_asgi_application_on_its_event_loop_worker(monkeypatch):
    conf = gunicorn_settings(monkeypatch)
    assert conf["worker_class"] == "asgi"
    assert conf["wsgi_app"] == "clubos.asgi:application"
    assert conf["worker_connections"] >= 1000


def test_the_application_is_djangos_own_asgi_handler():
    from clubos.asgi import django_application

    assert type(django_application) is ASGIHandler


def test_a_request_borrows_a_long_lived_thread_and_gives_it_back(monkeypatch):
    import clubos.asgi

    used: list[int] = []

    async def django_like(scope, receive, send) -> None:
        # Django's own per-request context, inside the lent one, as its handler enters it.
        async with ThreadSensitiveContext():
            used.append(await sync_to_async(threading.get_ident)())
            used.append(await sync_to_async(threading.get_ident)())

    monkeypatch.setattr(clubos.asgi, "django_application", django_like)
    lent = clubos.asgi.LentThreads()

    async def two_then_two_at_once() -> None:
        await lent({"type": "http"}, None, None)
        await lent({"type": "http"}, None, None)
        await asyncio.gather(*(lent({"type": "http"}, None, None) for _ in range(2)))

    asyncio.run(two_then_two_at_once())
    first, second, together = used[:2], used[2:4], used[4:]
    assert first[0] == first[1] == second[0] == second[1]  # one thread, kept and lent again
    assert threading.get_ident() not in used
    assert len(set(together)) == 2  # requests at once each have a thread of their own


def test_make_run_serves_the_same_asgi_application():
    run = MAKEFILE.read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "uvicorn clubos.asgi:application" in run
    assert "runserver" not in run
