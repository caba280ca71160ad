"""How the app is served: gunicorn's settings (the ASGI server itself: test_api_stream)."""

import runpy
from pathlib import Path

GUNICORN_CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def gunicorn_settings(monkeypatch, **env: str) -> dict:
    for name in ("GUNICORN_WORKER_CLASS", "GUNICORN_THREADS", "GUNICORN_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def test_gunicorn_serves_the_asgi_application_on_its_event_loop_worker_by_default(monkeypatch):
    conf = gunicorn_settings(monkeypatch)
    assert conf["worker_class"] == "asgi"
    assert conf["wsgi_app"] == "clubos.asgi:application"
    assert conf["worker_connections"] >= 1000


def test_gunicorn_can_serve_wsgi_with_threads_instead(monkeypatch):
    conf = gunicorn_settings(monkeypatch, GUNICORN_WORKER_CLASS="gthread", GUNICORN_THREADS="32")
    assert conf["wsgi_app"] == "clubos.wsgi:application"
    assert conf["threads"] == 32
