"""The bench's load generator: an asyncio client on uvloop, in a process of its own.

The client library is aiohttp when it is installed (its HTTP parser is C, so a streamed answer of
~70 small chunks costs it far less CPU), else httpx2 (a project dependency); the spec's
``client`` chooses, and the report says which one ran.

``python bench/loadgen.py SPEC.json OUT.json`` sends the spec's requests to ClubOS with at most
``concurrency`` in flight (closed loop: each of ``concurrency`` tasks sends its next request when
the previous one ends), and writes one record per request plus its own CPU use and event-loop lag.

Times are ``time.monotonic()`` (CLOCK_MONOTONIC, shared by every process on the machine), so the
orchestrator can line them up with the fake upstream's own call timestamps.

Bounded: at most ``len(requests)`` requests, each with a timeout, and no new request after
``deadline_s``. It only ever connects to the spec's ``base_url`` (the bench passes 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx2

try:  # The lighter client; not a project dependency (yet): httpx2 is the fallback.
    import aiohttp
except ImportError:
    aiohttp = None  # type: ignore[assignment]
try:
    import uvloop
except ImportError:  # uvloop is a project dependency; the default loop still works
    uvloop = None  # type: ignore[assignment]

API_PATH = "/api/v1/requests/"
SSE_HEADERS = {"Accept": "text/event-stream"}
Post = Callable[
    [Any, dict[str, Any], dict[str, str]],
    AbstractAsyncContextManager[tuple[int, AsyncIterator[bytes]]],
]
LAG_TICK_S = 0.01
# Ahead of the server in the CPU queue, so that a busy machine delays the answers, not the
# clock that times them (the report shows the client's event-loop lag to prove it).
CLIENT_NICE = -5


@dataclass
class Result:
    index: int
    ref: str | None
    mode: str
    t_send: float = 0.0
    t_headers: float | None = None
    t_route: float | None = None
    t_first_text: float | None = None
    t_done: float | None = None
    http_status: int | None = None
    status: str | None = None
    cached: bool | None = None
    route: str | None = None
    source: str | None = None
    deltas: int = 0
    server_ms: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _request_payload(item: dict[str, Any]) -> dict[str, Any]:
    payload = {"text": item["text"], "route": item.get("route", "auto")}
    if item.get("location"):
        payload["location"] = item["location"]
    return payload


def _take_final(result: Result, body: dict[str, Any]) -> None:
    result.status = body.get("status")
    result.cached = body.get("cached")
    route = body.get("route") or {}
    result.route = route.get("slug")
    result.source = (body.get("routing") or {}).get("source")
    result.server_ms = body.get("timings_ms") or {}


@contextlib.asynccontextmanager
async def _post_httpx2(
    client: Any, payload: dict[str, Any], headers: dict[str, str]
) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
    async with client.stream("POST", API_PATH, json=payload, headers=headers) as response:
        yield response.status_code, response.aiter_raw()


@contextlib.asynccontextmanager
async def _post_aiohttp(
    client: Any, payload: dict[str, Any], headers: dict[str, str]
) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
    async with client.post(API_PATH, json=payload, headers=headers) as response:
        yield response.status, response.content.iter_any()


async def _one_json(post: Post, client: Any, item: dict[str, Any], result: Result) -> None:
    async with post(client, _request_payload(item), {}) as (status, chunks):
        result.t_headers = time.monotonic()
        result.http_status = status
        body = b"".join([chunk async for chunk in chunks])
    result.t_done = time.monotonic()
    if status != 201:
        result.error = f"http {status}: {body[:200]!r}"
        return
    final = json.loads(body)
    _take_final(result, final)
    # The old design shows nothing until the whole answer is there.
    result.t_first_text = result.t_done if final.get("answer") else None


async def _one_sse(post: Post, client: Any, item: dict[str, Any], result: Result) -> None:
    async with post(client, _request_payload(item), SSE_HEADERS) as (status, chunks):
        result.t_headers = time.monotonic()
        result.http_status = status
        if status != 201:
            body = b"".join([chunk async for chunk in chunks])
            result.t_done = time.monotonic()
            result.error = f"http {status}: {body[:200]!r}"
            return
        buffer = b""
        final: bytes | None = None
        final_event = ""
        async for chunk in chunks:
            now = time.monotonic()
            buffer += chunk
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                # Frames are "event: NAME\ndata: JSON"; only route/done/error are decoded.
                head, _, data = frame.partition(b"\n")
                event = head[7:].decode() if head.startswith(b"event: ") else ""
                if event == "delta":
                    result.deltas += 1
                    if result.t_first_text is None:
                        result.t_first_text = now
                elif event == "route":
                    result.t_route = now
                    info = json.loads(data[6:])
                    result.route = (info.get("route") or {}).get("slug")
                    result.source = (info.get("routing") or {}).get("source")
                elif event in ("done", "error"):
                    final, final_event = data[6:], event
        result.t_done = time.monotonic()
    if final is None:
        result.error = "stream ended without a done/error event"
        return
    _take_final(result, json.loads(final))
    if final_event == "error":
        result.error = f"error event (status {result.status})"


@contextlib.asynccontextmanager
async def _client(spec: dict[str, Any], concurrency: int) -> AsyncIterator[tuple[Post, Any]]:
    """(post, client) for the spec's client library; both keep up to ``concurrency`` connections."""
    timeout_s = float(spec.get("timeout_s", 60))
    headers = {"Authorization": f"Token {spec['token']}"}
    if spec.get("client", "aiohttp") == "aiohttp" and aiohttp is not None:
        connector = aiohttp.TCPConnector(
            limit=concurrency, limit_per_host=concurrency, keepalive_timeout=30
        )
        async with aiohttp.ClientSession(
            base_url=spec["base_url"],
            headers=headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout_s, connect=15.0),
            trust_env=False,
        ) as session:
            yield _post_aiohttp, session
        return
    limits = httpx2.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=30
    )
    async with httpx2.AsyncClient(
        base_url=spec["base_url"],
        headers=headers,
        timeout=httpx2.Timeout(timeout_s, connect=15.0),
        limits=limits,
        trust_env=False,
    ) as client:
        yield _post_httpx2, client


async def _lag_monitor(samples: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(LAG_TICK_S)
        samples.append(loop.time() - before - LAG_TICK_S)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    items: list[dict[str, Any]] = spec["requests"]
    mode: str = spec["mode"]
    concurrency = max(1, min(int(spec["concurrency"]), len(items)))
    deadline = time.monotonic() + float(spec.get("deadline_s", 300))
    results: list[Result] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(items)):
        queue.put_nowait(index)
    one = _one_sse if mode == "sse" else _one_json
    start_gate = asyncio.Event()
    ramp_s = float(spec.get("ramp_s", 0.0))

    async with _client(spec, concurrency) as (post, client):

        async def worker(n: int) -> None:
            await start_gate.wait()
            if ramp_s:
                await asyncio.sleep(n * ramp_s / concurrency)
            while time.monotonic() < deadline:
                try:
                    index = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                item = items[index]
                result = Result(index=index, ref=item.get("ref"), mode=mode)
                results.append(result)
                result.t_send = time.monotonic()
                try:
                    await one(post, client, item, result)
                except Exception as exc:
                    result.t_done = time.monotonic()
                    result.error = f"{type(exc).__name__}: {exc}"[:300]

        lag: list[float] = []
        stop = asyncio.Event()
        monitor = asyncio.create_task(_lag_monitor(lag, stop))
        tasks = [asyncio.create_task(worker(n)) for n in range(concurrency)]
        await asyncio.sleep(0)  # let every worker reach the gate: the first wave starts at once
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        start_gate.set()
        await asyncio.gather(*tasks)
        wall = time.monotonic() - t0
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        stop.set()
        await monitor

    lag.sort()
    return {
        "client": "aiohttp" if post is _post_aiohttp else "httpx2",
        "results": [asdict(r) for r in sorted(results, key=lambda r: r.index)],
        "not_sent": queue.qsize(),
        "wall_s": wall,
        "t_start": t0,
        "cpu_user_s": usage1.ru_utime - usage0.ru_utime,
        "cpu_sys_s": usage1.ru_stime - usage0.ru_stime,
        "process_cpu_s": usage1.ru_utime + usage1.ru_stime,
        "loop_lag_ms": {
            "p50": 1000 * lag[len(lag) // 2] if lag else None,
            "p99": 1000 * lag[min(len(lag) - 1, int(len(lag) * 0.99))] if lag else None,
            "max": 1000 * lag[-1] if lag else None,
        },
    }


def main() -> int:
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    with contextlib.suppress(OSError):  # needs root (or CAP_SYS_NICE); fine without
        os.nice(CLIENT_NICE)
    factory = uvloop.new_event_loop if uvloop is not None else None
    report = asyncio.run(run(spec), loop_factory=factory)
    with open(out_path, "w") as f:
        json.dump(report, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
