"""What lending each request a long-lived thread (``clubos.asgi.LentThreads``) saves, in one run.

In one process on one event loop (uvloop, as a server worker), the same streamed submits go
through Django's stock handler alone (a thread started and joined per request) and through
the lent threads, in alternating rounds of ``--clients`` concurrent clients, each round
``--requests`` requests. Prints the process's CPU per request (``time.process_time``, every
thread) and the wall time per request for each way. The fake upstream runs in its own
process (first token after 0.3 s, 1.5 s per call), so its CPU is not counted.

Needs PostgreSQL and Redis as ``bench/run.py`` does; it uses the ``clubos_bench`` database
that ``bench/run.py`` leaves behind (run that first), with Redis db 2.

    .venv/bin/python bench/lent_threads.py [--clients 50] [--requests 250] [--rounds 3]
"""

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.asgi import post_scope  # noqa: E402

FAKE_PORT = 18799
os.environ.update(
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/clubos_bench",
    REDIS_URL="redis://127.0.0.1:6379/2",
    OPENAI_API_KEY="bench",
    OPENAI_BASE_URL=f"http://127.0.0.1:{FAKE_PORT}/v1",
    DJANGO_SECRET_KEY="bench-lent-threads",
    DJANGO_ALLOWED_HOSTS="127.0.0.1",
    # Plain HTTP: no redirect to https.
    DJANGO_SECURE_SSL_REDIRECT="0",
    # Throttling on, at a per-user rate these many submits from one user never reach.
    THROTTLE_SUBMIT_RATE="1000000/min",
    DJANGO_SETTINGS_MODULE="clubos.settings",
)


async def submit(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    scope = post_scope("/api/v1/requests/", body, headers)
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    finished = asyncio.Event()
    status = 0

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    finished.set()
    return status


def rounds_summary(rounds: list[dict]) -> str:
    """The median server CPU per request over the rounds, each round's, and the failures."""
    cpu = [r["cpu_ms"] for r in rounds]
    return (
        f"{statistics.median(cpu):5.2f} ms (rounds: {', '.join(f'{c:.2f}' for c in cpu)}); "
        f"failures {sum(r['failures'] for r in rounds)}"
    )


async def round_of(app: Any, name: str, clients: int, requests: int, headers: Any) -> dict:
    sent = 0
    failures = 0

    async def client(k: int) -> None:
        nonlocal sent, failures
        await asyncio.sleep(k * 1.5 / clients)  # steady arrivals, as bench/run.py
        while sent < requests:
            sent += 1
            text = f"TrackMan frozen in bay 3 (lent-{name}-{time.monotonic_ns()})"
            if await submit(app, json.dumps({"text": text}).encode(), headers) != 201:
                failures += 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return {
        "cpu_ms": (time.process_time() - cpu) * 1000 / sent,
        "wall_s": time.perf_counter() - wall,
        "requests": sent,
        "failures": failures,
    }


@contextlib.asynccontextmanager
async def app_started(username: str) -> AsyncIterator[list[tuple[bytes, bytes]]]:
    """``clubos.asgi`` through its lifespan start-up (shut down on leaving), and the headers
    of a streamed submit with a new token of ``username``."""
    from asgiref.sync import sync_to_async

    import clubos.asgi as served  # imported (and warmed up) before the loop started

    lifespan: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def ignore(message: dict[str, Any]) -> None:
        return None

    running = asyncio.ensure_future(served.application({"type": "lifespan"}, lifespan.get, ignore))
    await lifespan.put({"type": "lifespan.startup"})
    await asyncio.sleep(1)

    def token() -> str:
        from django.contrib.auth import get_user_model

        from accounts.services import api_token_create

        user, _ = get_user_model().objects.get_or_create(username=username)
        return api_token_create(user=user)[1]

    try:
        yield [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Token {await sync_to_async(token)()}".encode()),
            (b"content-type", b"application/json"),
            (b"accept", b"text/event-stream"),
        ]
    finally:
        await lifespan.put({"type": "lifespan.shutdown"})
        await running


def run_beside_the_fake_upstream(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """The fake upstream in a process of its own (first token after 0.3 s, 1.5 s per call),
    then ``main()`` on uvloop, with ``clubos.asgi`` imported first (its start-up work happens
    before the loop, as in a server)."""
    fake = subprocess.Popen(
        [
            *(sys.executable, "-m", "devtools.fake_openai", "--port", str(FAKE_PORT)),
            *("--ttft", "0.3", "--latency", "1.5", "--tick", "0.05"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{FAKE_PORT}/_fake/behaviour", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        import uvloop

        import clubos.asgi  # noqa: F401  (start-up work, before the loop: as a server does)

        uvloop.run(main())
    finally:
        fake.terminate()
        fake.wait(10)


async def main(args: argparse.Namespace) -> None:
    import clubos.asgi as served

    async with app_started("bench") as headers:
        ways = {"stock": served.django_application, "lent": served.served}
        for name, app in ways.items():  # warm-up
            await round_of(app, name, args.clients, args.clients, headers)
        results: dict[str, list[dict]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, app in ways.items():
                results[name].append(
                    await round_of(app, name, args.clients, args.requests, headers)
                )
    print(f"{args.clients} concurrent clients, {args.rounds} rounds of {args.requests} each way")
    for name, rounds in results.items():
        print(f"  {name:5s}  CPU per request {rounds_summary(rounds)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    run_beside_the_fake_upstream(lambda: main(arguments))
