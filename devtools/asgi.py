"""An HTTP request as an ASGI server hands it to the application, for driving ``clubos.asgi``
in-process (the tests' exactly-timed disconnects, bench/lent_threads.py)."""

from typing import Any


def post_scope(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The scope of ``POST path`` with ``body``: the given headers and its Content-Length."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }
