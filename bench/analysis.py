"""From per-request records and the fake upstream's call log to the figures of the report."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from procs import CpuWindow
from texts import REF_RE


@dataclass
class Run:
    """One load run: per-request records (merged over its client processes) and its CPU."""

    label: str
    mode: str
    concurrency: int
    results: list[dict[str, Any]]
    not_sent: int
    wall_s: float
    client: str
    client_cpu_s: float
    """The clients' CPU while sending (what the figures per request use)."""
    client_process_cpu_s: float
    """The client processes' whole CPU, start-up included."""
    client_procs: int
    loop_lag_p99_ms: float | None
    loop_lag_max_ms: float | None
    cpu: CpuWindow = field(default_factory=CpuWindow)


def pct(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile, linear between the closest ranks (numpy's default method)."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def pcts_ms(values: Sequence[float], qs: Sequence[int] = (50, 95, 99)) -> dict[str, float | None]:
    return {f"p{q}": ms(pct(values, q)) for q in qs}


def is_error(result: dict[str, Any]) -> bool:
    """Transport failure, non-201, an `error` event, no final event, or a status not ok/cached."""
    return result.get("error") is not None or result.get("status") not in ("ok", "cached")


# --- Matching requests to the fake upstream's calls ----------------------------------------------


def call_text(body: Any) -> str:
    """The user text a call carried (Responses ``input`` or Chat ``messages``)."""
    if not isinstance(body, dict):
        return ""
    raw = body.get("input") if "input" in body else body.get("messages")
    if isinstance(raw, str):
        return raw
    parts: list[str] = []
    if isinstance(raw, list):
        for message in raw:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [str(p.get("text", "")) for p in content if isinstance(p, dict)]
    return "\n".join(parts)


def is_routing_call(body: Any) -> bool:
    """The LLM router asks for JSON (a json_schema format); an assistant call does not."""
    if not isinstance(body, dict):
        return False
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    fmt = fmt or body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object")


@dataclass
class Upstream:
    """The fake upstream's calls for one request (found by the request's reference)."""

    calls: int = 0
    routing_calls: int = 0
    own_s: float = 0.0
    first_start: float | None = None
    last_finish: float | None = None
    unfinished: int = 0


def upstream_by_ref(calls: list[dict[str, Any]]) -> dict[str, Upstream]:
    found: dict[str, Upstream] = {}
    for call in calls:
        match = REF_RE.search(call_text(call.get("body")))
        if match is None:
            continue
        up = found.setdefault(match.group(1), Upstream())
        up.calls += 1
        up.routing_calls += is_routing_call(call.get("body"))
        started, finished = call.get("started"), call.get("finished")
        if started is None or finished is None:
            up.unfinished += 1
            continue
        up.own_s += finished - started
        up.first_start = started if up.first_start is None else min(up.first_start, started)
        up.last_finish = finished if up.last_finish is None else max(up.last_finish, finished)
    return found


# --- One run's summary -------------------------------------------------------------------------


def summarise(
    run: Run,
    calls: list[dict[str, Any]] | None,
    logs: dict[str, Any] | None,
    *,
    idle: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One run's figures. ``idle``: CPU seconds per second each group burns with no load."""
    results = run.results
    ok = [r for r in results if not is_error(r)]
    totals = [r["t_done"] - r["t_send"] for r in ok]
    first = [r["t_first_text"] - r["t_send"] for r in ok if r.get("t_first_text") is not None]
    errors = Counter(
        (r.get("error") or f"status {r.get('status')}")[:60] for r in results if is_error(r)
    )
    sent = len(results)

    def per_request(seconds: float) -> float | None:
        return 1000 * seconds / sent if sent else None

    cpu = run.cpu
    used = {
        "server": cpu.app_s,
        "fake_upstream": cpu.fake_s,
        "postgres": cpu.postgres_s,
        "redis": cpu.redis_s,
    }
    idle = idle or {}
    ours = sum(used.values()) + run.client_process_cpu_s
    summary: dict[str, Any] = {
        "label": run.label,
        "mode": run.mode,
        "concurrency": run.concurrency,
        "requests_sent": sent,
        "not_sent": run.not_sent,
        "errors": sum(errors.values()) + run.not_sent,
        "error_kinds": dict(errors),
        "total_ms": pcts_ms(totals),
        "first_text_ms": pcts_ms(first),
        "routes": dict(Counter(str(r.get("route")) for r in results)),
        "routing_sources": dict(Counter(str(r.get("source")) for r in results)),
        "emergency_routed": sum(1 for r in results if r.get("route") == "emergency"),
        "wall_s": run.wall_s,
        "throughput_rps": sent / run.wall_s if run.wall_s else None,
        "client": {
            "library": run.client,
            "processes": run.client_procs,
            "loop_lag_p99_ms": run.loop_lag_p99_ms,
            "loop_lag_max_ms": run.loop_lag_max_ms,
        },
        "cpu_s": {"window_s": cpu.wall_s, **used, "client": run.client_cpu_s},
        "cpu_ms_per_request": {
            **{name: per_request(seconds) for name, seconds in used.items()},
            "client": per_request(run.client_cpu_s),
        },
        "cpu_ms_per_request_net_of_idle": {
            name: per_request(max(0.0, seconds - idle.get(name, 0.0) * cpu.wall_s))
            for name, seconds in used.items()
        },
        "machine_cpu_busy": cpu.machine_busy,
        "other_processes_cores": max(0.0, cpu.machine_busy_s - ours) / cpu.wall_s
        if cpu.wall_s
        else None,
    }
    if calls is not None:
        ups = upstream_by_ref(calls)
        overhead, before, after, own = [], [], [], []
        unmatched = 0
        for r in ok:
            up = ups.get(r.get("ref") or "")
            if up is None or up.first_start is None or up.last_finish is None or up.unfinished:
                unmatched += 1
                continue
            # Kept in the per-request records (latest-requests.json) for later digging.
            r["upstream"] = {
                "calls": up.calls,
                "routing_calls": up.routing_calls,
                "own_s": up.own_s,
                "first_start": up.first_start,
                "last_finish": up.last_finish,
            }
            overhead.append(r["t_done"] - r["t_send"] - up.own_s)
            before.append(up.first_start - r["t_send"])
            after.append(r["t_done"] - up.last_finish)
            own.append(up.own_s)
        summary["upstream"] = {
            "calls": len(calls),
            "routing_calls": sum(u.routing_calls for u in ups.values()),
            "calls_per_request": len(calls) / sent if sent else None,
            "own_ms": pcts_ms(own, (50, 95)),
            "unmatched_requests": unmatched,
        }
        summary["overhead_ms"] = {**pcts_ms(overhead), "max": ms(max(overhead, default=None))}
        summary["before_upstream_ms"] = pcts_ms(before, (50, 99))
        summary["after_upstream_ms"] = pcts_ms(after, (50, 99))
    if logs is not None:
        summary["request_logs"] = logs
        summary["rows_match"] = logs["count"] == sent
    return summary
