"""A TCP proxy on loopback that can be cut and restored: a database outage on demand.

Put it in front of PostgreSQL (``DATABASE_URL=postgres://postgres@127.0.0.1:<proxy port>/db``)
and cut it, rather than stopping a server other programs share. Two kinds of outage:

* ``reset``: every connection through the proxy is dropped (a TCP reset) and new ones are
  dropped as they arrive, as when the server has gone away or restarted;
* ``blackhole``: nothing passes either way and nothing is closed, as in a network partition;
  new connections are accepted and hang. Restored, the held bytes flow on (as TCP would
  retransmit them) and the connections that waited carry on.

In-process (tests)::

    proxy = TcpProxy(target=("127.0.0.1", 5432)).start()   # proxy.port
    proxy.cut("reset"); ...; proxy.restore(); proxy.stop()

Standalone (``make faults``), controlled over HTTP on loopback::

    python -m devtools.tcp_proxy --port 18510 --target 127.0.0.1:5432 --control-port 18511
    curl -X POST 127.0.0.1:18511/cut?mode=reset   # or mode=blackhole
    curl -X POST 127.0.0.1:18511/restore
    curl 127.0.0.1:18511/state                     # {"mode": "up", "live": 3, ...}

It must not import Django (it also runs on its own).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, urlsplit

Mode = Literal["up", "reset", "blackhole"]
CHUNK = 64 * 1024


@dataclass(eq=False)  # each pair is itself: hashed by identity
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()  # a reset, not a polite close
        for task in self.tasks:
            task.cancel()


class TcpProxy:
    """Forwards ``host:port`` (``port`` 0 picks a free one) to ``target``, in a thread of its
    own with its own event loop; ``cut`` and ``restore`` may be called from any thread."""

    def __init__(self, *, target: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        self.host = host
        self.port = port
        self.mode: Mode = "up"
        self.connections_total = 0
        self._pairs: set[_Pair] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # -- control (any thread) ------------------------------------------------------------

    def start(self) -> TcpProxy:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name="tcp-proxy", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def cut(self, mode: Literal["reset", "blackhole"] = "reset") -> None:
        self._call(self._cut, mode)

    def restore(self) -> None:
        self._call(self._restore)

    @property
    def live_connections(self) -> int:
        return len(self._pairs)

    def state(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "live": len(self._pairs),
            "total": self.connections_total,
            "listen": f"{self.host}:{self.port}",
            "target": f"{self.target[0]}:{self.target[1]}",
        }

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        assert self._loop is not None, "start() the proxy first"
        if self._thread is threading.current_thread():
            fn(*args)
            return
        done = threading.Event()

        def run() -> None:
            try:
                fn(*args)
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    # -- the loop's side -----------------------------------------------------------------

    async def _open(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        for pair in list(self._pairs):
            pair.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def _cut(self, mode: Literal["reset", "blackhole"]) -> None:
        assert self._flowing is not None
        self.mode = mode
        if mode == "reset":
            for pair in list(self._pairs):
                pair.abort()
            self._pairs.clear()
        else:
            self._flowing.clear()

    def _restore(self) -> None:
        assert self._flowing is not None
        self.mode = "up"
        self._flowing.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.connections_total += 1
        if self.mode == "reset":
            writer.transport.abort()
            return
        pair = _Pair(client=writer)
        self._pairs.add(pair)
        try:
            await self._flowing.wait()  # a blackhole: the connection hangs until restored
            if self.mode == "reset" or pair not in self._pairs:
                writer.transport.abort()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            pair.upstream = up_writer
            pair.tasks = [
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            await asyncio.wait(pair.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._pairs.discard(pair)
            pair.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            while data := await reader.read(CHUNK):
                # Cut as a blackhole: what was read is held (as the network would keep
                # retransmitting it) and goes on once restored.
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()


# --- Standalone, with an HTTP control port ------------------------------------------------


async def _control(
    proxy: TcpProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        request_line = (await reader.readline()).decode("latin-1").split()
        while (await reader.readline()).strip():
            pass  # headers: nothing in them matters
        method, target = [*request_line, "", ""][:2]
        url = urlsplit(target)
        status, body = 200, {}
        if method == "POST" and url.path == "/cut":
            mode = parse_qs(url.query).get("mode", ["reset"])[0]
            if mode not in ("reset", "blackhole"):
                status, body = 400, {"error": "mode is reset or blackhole"}
            else:
                proxy._cut(mode)  # type: ignore[arg-type]
        elif method == "POST" and url.path == "/restore":
            proxy._restore()
        elif not (method == "GET" and url.path == "/state"):
            status, body = 404, {"error": f"no {method} {url.path}"}
        payload = json.dumps(body or proxy.state()).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
    finally:
        writer.close()


async def _main_async(proxy: TcpProxy, control_port: int | None) -> None:
    await proxy._open()
    control = None
    if control_port is not None:
        control = await asyncio.start_server(
            lambda r, w: _control(proxy, r, w), proxy.host, control_port
        )
    print(json.dumps(proxy.state()), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if control is not None:
        control.close()
    await proxy._close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.tcp_proxy", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--target", default="127.0.0.1:5432", help="host:port")
    parser.add_argument("--control-port", type=int, default=None)
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        print("error: the proxy listens on loopback only", file=sys.stderr)
        return 2
    proxy = TcpProxy(target=(host or "127.0.0.1", int(port)), host=args.host, port=args.port)
    asyncio.run(_main_async(proxy, args.control_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
