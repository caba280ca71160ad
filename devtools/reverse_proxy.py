"""A real reverse proxy on loopback: Debian's nginx in front of one or more app servers.

For tests and scripts that need what production has in front of the app: a proxy that
appends the peer's address to ``X-Forwarded-For``, sets ``X-Forwarded-Proto`` and spreads
requests round-robin over the upstreams, with streaming passed through as it arrives
(``proxy_buffering off``)::

    with ReverseProxy(["127.0.0.1:8001", "127.0.0.1:8002"]) as proxy:
        httpx.get(proxy.url + "/api/v1/health/")

Everything nginx writes (config, pid, logs, temp files) lives in a temporary directory that
is removed on exit; nginx runs in the foreground (``daemon off``) as a child of this process.
From a shell: ``python devtools/reverse_proxy.py --upstream 127.0.0.1:8001 --port 8080``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")


def nginx_path() -> str | None:
    """The nginx binary, or None when it is not installed (``apt-get install nginx``)."""
    found = NGINX if os.access(NGINX, os.X_OK) else shutil.which("nginx")
    return found or None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _upstream(target: str | int) -> str:
    return f"127.0.0.1:{target}" if isinstance(target, int) else target


class ReverseProxy:
    """nginx on ``127.0.0.1:port`` proxying round-robin to ``upstreams`` (``host:port`` or a
    port on 127.0.0.1). ``port=0`` picks a free one."""

    def __init__(
        self,
        upstreams: Sequence[str | int],
        *,
        port: int = 0,
        read_timeout_s: int = 120,
        access_log: bool = False,
    ) -> None:
        if not upstreams:
            raise ValueError("a reverse proxy needs at least one upstream")
        self.upstreams = [_upstream(u) for u in upstreams]
        self.port = port or _free_port()
        self.read_timeout_s = read_timeout_s
        self.access_log = access_log
        self.dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> str:
        """What nginx has logged so far (upstream failures, its own errors)."""
        if self.dir is None or not (self.dir / "error.log").exists():
            return ""
        return (self.dir / "error.log").read_text(errors="replace")

    def config(self) -> str:
        assert self.dir is not None
        d = self.dir
        servers = "\n".join(
            f"        server {u} max_fails=1 fail_timeout=2s;" for u in self.upstreams
        )
        access = f"access_log {d}/access.log;" if self.access_log else "access_log off;"
        return f"""\
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    {access}
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 10m;
    upstream app {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout {self.read_timeout_s}s;
            proxy_connect_timeout 2s;
            # A refused connection (an instance that died) is tried on the next one; nginx
            # never re-sends a POST an upstream has already received.
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""

    def start(self, timeout_s: float = 10.0) -> Self:
        binary = nginx_path()
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install -y nginx)")
        self.dir = Path(tempfile.mkdtemp(prefix="clubos-nginx-"))
        # When run as root nginx's workers drop to an unprivileged user, who must be able to
        # reach the temp paths inside this directory.
        self.dir.chmod(0o755)
        (self.dir / "nginx.conf").write_text(self.config())
        self._process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            # -e: even the errors before the config is read go to the temp dir, not /var/log.
            [binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-e", "error.log"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                log = self.error_log
                self._cleanup()
                raise RuntimeError(f"nginx exited at start: {stderr}{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nginx did not start listening in time") from None
                time.sleep(0.02)

    def reload(self, upstreams: Sequence[str | int]) -> None:
        """Point the proxy at other upstreams (SIGHUP: nginx re-reads its config gracefully)."""
        assert self._process is not None and self.dir is not None, "the proxy is not running"
        self.upstreams = [_upstream(u) for u in upstreams]
        (self.dir / "nginx.conf").write_text(self.config())
        self._process.send_signal(signal.SIGHUP)
        time.sleep(0.3)  # nginx starts new workers and retires the old ones gracefully

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGQUIT)  # graceful: finish open requests
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.send_signal(signal.SIGTERM)  # fast shutdown
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()
        self._process = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--upstream",
        action="append",
        required=True,
        help="host:port of an app server (repeat for round-robin)",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--access-log", action="store_true", help="keep nginx's access log")
    args = parser.parse_args()
    proxy = ReverseProxy(args.upstream, port=args.port, access_log=args.access_log)
    with proxy:
        print(f"nginx on {proxy.url} -> {', '.join(proxy.upstreams)} (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
