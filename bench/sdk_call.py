"""CPU of one streamed model call on an event loop: through the OpenAI SDK's async client
(its aiohttp transport), and straight through aiohttp as ``config.llm``'s channel sends it.

    .venv/bin/python bench/sdk_call.py [--calls 300]

Starts the project's fake upstream in a process of its own (answers at once, so the figures
are this process's work: building and sending the request, reading the ~25 events back) and
prints, per call, this process's CPU time and the wall time, for each way in turn, twice.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx2
import uvloop
from openai import AsyncOpenAI, DefaultAioHttpClient

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTIONS = "You are the tech support assistant for a golf simulator venue. " * 20
BODY = {
    "model": "gpt-4o-mini",
    "instructions": INSTRUCTIONS,
    "input": "Location: Bay 3\n\nThe projector in bay 3 is flickering",
    "stream": True,
    "store": False,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the fake upstream did not start")


async def measure(calls: int, base_url: str) -> None:
    sdk = AsyncOpenAI(
        api_key="bench",
        base_url=base_url,
        max_retries=0,
        http_client=DefaultAioHttpClient(timeout=15),
    )
    session = aiohttp.ClientSession()
    headers = {
        "Authorization": "Bearer bench",
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
    }

    async def through_the_sdk() -> None:
        response = await sdk.responses.with_streaming_response.create(
            **BODY, timeout=httpx2.Timeout(15, connect=3)
        ).__aenter__()
        async for _ in response.http_response.aiter_bytes():
            pass
        await response.close()

    async def through_aiohttp() -> None:
        async with session.post(
            f"{base_url}/responses", data=json.dumps(BODY).encode(), headers=headers
        ) as response:
            async for _ in response.content.iter_any():
                pass

    ways: dict[str, Callable[[], Awaitable[None]]] = {
        "SDK async client": through_the_sdk,
        "aiohttp (the channel)": through_aiohttp,
    }
    try:
        for _round in range(2):
            for name, call in ways.items():
                for _ in range(30):  # warm: connections open, code paths hot
                    await call()
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(calls):
                    await call()
                cpu_ms = (time.process_time() - cpu) / calls * 1000
                wall_ms = (time.perf_counter() - wall) / calls * 1000
                print(f"{name:<24} CPU {cpu_ms:.3f} ms a call, wall {wall_ms:.3f} ms")
    finally:
        await session.close()
        await sdk.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    port = free_port()
    fake = subprocess.Popen(
        [
            *(sys.executable, "-m", "devtools.fake_openai", "--port", str(port)),
            *("--ttft", "0", "--latency", "0", "--log-level", "warning"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_for(port)
        uvloop.run(measure(args.calls, f"http://127.0.0.1:{port}/v1"))
    finally:
        fake.terminate()
        fake.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
