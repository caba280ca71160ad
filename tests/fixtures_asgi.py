"""Pytest plugin: the project's ASGI application (``clubos.asgi``) on a real loopback server.

``asgi_live_server`` is ``live_server``'s counterpart for the event-loop path: uvicorn (the
same uvloop and httptools as gunicorn's ``asgi`` worker) in a thread, serving
``clubos.asgi.application`` with its lifespan events. Tests using it need
``transaction=True``: the server's threads have their own database connections.
"""

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class AsgiLiveServer:
    url: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def asgi_live_server(transactional_db) -> Iterator[AsgiLiveServer]:
    import uvicorn

    from clubos.asgi import application

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            application,
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            # As `make run`: the client address is the peer's, never X-Forwarded-For's.
            proxy_headers=False,
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, name="asgi-live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the ASGI test server did not start")
        time.sleep(0.01)
    try:
        yield AsgiLiveServer(url=f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
