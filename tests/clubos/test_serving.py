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


def stream_messages(*parts: bytes) -> list:
    """What the ASGI handler sends for a streamed response of ``parts``, and when the
    response's iterator finished, in order."""
    import asyncio

    from clubos.asgi import django_application
    from clubos.serving import EventStreamResponse

    happened: list = []

    async def content():
        try:
            for part in parts:
                yield part
        finally:
            happened.append("iterator closed")

    async def send(message: dict) -> None:
        happened.append((message.get("body", b""), message.get("more_body", False)))

    async def scenario() -> None:
        response = EventStreamResponse(content(), content_type="text/event-stream")
        await django_application.send_response(response, send)
        happened.append("sent")

    asyncio.run(scenario())
    assert happened[0][0] == b""  # http.response.start
    return happened[1:]


def test_a_streams_last_part_goes_out_with_the_end_of_the_body_then_the_stream_ends():
    from clubos.serving import LastPart

    assert stream_messages(b"event: route\n\n", LastPart(b"event: done\n\n")) == [
        (b"event: route\n\n", True),
        (b"event: done\n\n", False),
        "iterator closed",  # its clean-up ran to its end before the response was done with
        "sent",
    ]


def test_a_stream_without_a_last_part_ends_with_an_empty_message_as_under_django():
    assert stream_messages(b"one", b"two") == [
        (b"one", True),
        (b"two", True),
        "iterator closed",
        (b"", False),
        "sent",
    ]


def test_a_stream_cancelled_in_a_send_is_closed_before_the_handler_is_done():
    """A slow reader gone: the server cancels the request while a frame waits to be sent.
    The stream's own clean-up (a request's row marked abandoned) must run then, not
    whenever the response is garbage-collected."""
    import asyncio

    from clubos.asgi import django_application
    from clubos.serving import EventStreamResponse

    happened: list[str] = []

    async def content():
        try:
            yield b"event: route\n\n"
            yield b"event: delta\n\n"
            yield b"event: done\n\n"
        finally:
            happened.append("stream closed")

    async def send(message: dict) -> None:
        if message.get("body") == b"event: delta\n\n":
            await asyncio.sleep(10)  # the socket is full: the client stopped reading

    async def scenario() -> None:
        response = EventStreamResponse(content(), content_type="text/event-stream")
        task = asyncio.ensure_future(django_application.send_response(response, send))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            happened.append("handler done")

    asyncio.run(scenario())
    assert happened == ["stream closed", "handler done"]
