"""The bench's load generator: an asyncio client (httpx2 on uvloop) in a process of its own.

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
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx2

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a project dependency
    uvloop = None  # type: ignore[assignment]

API_PATH = "/api/v1/requests/"
LAG_TICK_S = 0.005


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


async def _one_json(client: httpx2.AsyncClient, item: dict[str, Any], result: Result) -> None:
    response = await client.post(API_PATH, json=_request_payload(item))
    result.t_headers = result.t_done = time.monotonic()
    result.http_status = response.status_code
    if response.status_code != 201:
        result.error = f"http {response.status_code}: {response.text[:200]}"
        return
    body = response.json()
    _take_final(result, body)
    # The old design shows nothing until the whole answer is there.
    result.t_first_text = result.t_done if body.get("answer") else None


async def _one_sse(client: httpx2.AsyncClient, item: dict[str, Any], result: Result) -> None:
    headers = {"Accept": "text/event-stream"}
    async with client.stream(
        "POST", API_PATH, json=_request_payload(item), headers=headers
    ) as response:
        result.t_headers = time.monotonic()
        result.http_status = response.status_code
        if response.status_code != 201:
            body = await response.aread()
            result.t_done = time.monotonic()
            result.error = f"http {response.status_code}: {body[:200]!r}"
            return
        buffer = b""
        final: bytes | None = None
        final_event = ""
        async for chunk in response.aiter_raw():
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
    timeout = httpx2.Timeout(float(spec.get("timeout_s", 60)), connect=15.0)
    limits = httpx2.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=30
    )
    headers = {"Authorization": f"Token {spec['token']}"}
    results: list[Result] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(items)):
        queue.put_nowait(index)
    one = _one_sse if mode == "sse" else _one_json
    start_gate = asyncio.Event()

    async with httpx2.AsyncClient(
        base_url=spec["base_url"], headers=headers, timeout=timeout, limits=limits, trust_env=False
    ) as client:

        async def worker() -> None:
            await start_gate.wait()
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
                    await one(client, item, result)
                except Exception as exc:
                    result.t_done = time.monotonic()
                    result.error = f"{type(exc).__name__}: {exc}"[:300]

        lag: list[float] = []
        stop = asyncio.Event()
        monitor = asyncio.create_task(_lag_monitor(lag, stop))
        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
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
        "results": [asdict(r) for r in sorted(results, key=lambda r: r.index)],
        "not_sent": queue.qsize(),
        "wall_s": wall,
        "t_start": t0,
        "cpu_user_s": usage1.ru_utime - usage0.ru_utime,
        "cpu_sys_s": usage1.ru_stime - usage0.ru_stime,
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
    factory = uvloop.new_event_loop if uvloop is not None else None
    report = asyncio.run(run(spec), loop_factory=factory)
    with open(out_path, "w") as f:
        json.dump(report, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
