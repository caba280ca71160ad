"""How the app is served: gunicorn's settings and Django's own ASGI handler (the server
itself, over real HTTP: test_api_stream and test_one_path)."""

import runpy
from pathlib import Path

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


def test_make_run_serves_the_same_asgi_application():
    run = MAKEFILE.read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "uvicorn clubos.asgi:application" in run
    assert "runserver" not in run
