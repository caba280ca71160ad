"""The targets of the performance issue, PASS/FAIL for each, and the printed tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TARGET_TOTAL_RATIO = 0.55
"""new/old total p50, with 1.5 s of upstream time per model call."""
TARGET_FIRST_TEXT_RATIO = 0.15
"""new first-answer-text p50 / old total p50."""
TARGET_OVERHEAD_P50_MS = 5.0
TARGET_OVERHEAD_P99_MS = 50.0
TARGET_OVERHEAD_AT = 50
TARGET_ERRORS_AT = 500
# The overhead target is read at steady arrivals (clients not in lockstep); the burst level
# beside it shows what synchronised arrivals cost. 0 errors is checked on the burst.
TARGET_OVERHEAD_LEVEL = (TARGET_OVERHEAD_AT, "steady")
TARGET_ERRORS_LEVEL = (TARGET_ERRORS_AT, "burst")
TARGET_CACHE_P50_MS = 5.0
TARGET_QUERIES = 3.0
QUERIES_SLACK = 0.05
"""An autovacuum pass or the 60 s config cache refresh may add a transaction or two to a leg."""


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "FAIL")


def le(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.1 and digits < 3:
            digits = 3
        return f"{value:.{digits}f}"
    return str(value)


def pair(a: Any, b: Any) -> str:
    return f"{fmt(a)} / {fmt(b)}"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 1) -> str:
    cells = [list(header)] + [
        [c if isinstance(c, str) else fmt(c, digits) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title, "=" * len(title)]
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def counts(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(values.items(), key=lambda kv: -kv[1]))


def rows_check(summary: dict[str, Any]) -> str:
    logs = summary.get("request_logs")
    if not logs:
        return "-"
    return (
        f"{logs['count']} {'==' if summary.get('rows_match') else '!='} {summary['requests_sent']}"
    )


def statuses(summary: dict[str, Any]) -> str:
    logs = summary.get("request_logs") or {}
    return counts(logs.get("by_status") or {})


# --- Verdicts ----------------------------------------------------------------------------------


def verdicts_of(report: dict[str, Any]) -> dict[str, bool | None]:
    v: dict[str, bool | None] = {}
    ab = report.get("old_vs_new")
    if ab:
        clean = ab["old"]["errors"] == 0 and ab["new"]["errors"] == 0
        v["new/old total p50 <= 0.55"] = clean and ab["pass"]["total_ratio"]
        v["first text <= 0.15 x old total"] = clean and ab["pass"]["first_text_ratio"]
    levels = {level_key(lv): lv for lv in report.get("overhead") or []}
    if TARGET_OVERHEAD_LEVEL in levels:
        lv = levels[TARGET_OVERHEAD_LEVEL]
        clean = lv["errors"] == 0
        v["overhead p50 <= 5 ms @50 steady"] = clean and le(
            lv["overhead_ms"]["p50"], TARGET_OVERHEAD_P50_MS
        )
        v["overhead p99 <= 50 ms @50 steady"] = clean and le(
            lv["overhead_ms"]["p99"], TARGET_OVERHEAD_P99_MS
        )
    if TARGET_ERRORS_LEVEL in levels:
        v["0 errors @500"] = levels[TARGET_ERRORS_LEVEL]["errors"] == 0
    if levels:
        v["RequestLog rows == sent"] = all(lv.get("rows_match") for lv in levels.values())
    cache = report.get("cache")
    if cache:
        v["cache hit p50 <= 5 ms (JSON)"] = cache["json"]["pass"]
        v["cache hit p50 <= 5 ms (SSE)"] = cache["sse"]["pass"]
        v["cache hits all 'cached', no upstream call"] = bool(
            cache["json"]["all_cached"]
            and cache["sse"]["all_cached"]
            and cache["no_upstream_calls"]
        )
    for name, q in (report.get("queries") or {}).items():
        v[f"<= 3 queries/request ({name})"] = q.get("pass")
    return v


# --- Tables ------------------------------------------------------------------------------------


def render_header(report: dict[str, Any]) -> list[str]:
    m, s = report["machine"], report.get("stack") or {}
    lines = [
        f"ClubOS bench ({report['profile']} run) {m['date_utc']} on {m['hostname']}: "
        f"{m['nproc']} x {m['cpu_model']}, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, PostgreSQL {m['postgresql']} (max_connections "
        f"{m['postgresql_max_connections']}), Redis {m['redis']}"
    ]
    if s:
        up = s["upstream"]
        lines.append(
            f"app: gunicorn {s['worker_class']} {s['workers']} workers"
            + " (uvloop), "
            + "".join(f"{k}={v}, " for k, v in (s.get("app_settings") or {}).items())
            + f"{s['database']}, Redis cache; upstream: devtools.fake_openai, first token after "
            f"{up['ttft_s']} s, {up['latency_s']} s per model call; client: {s['client']} "
            f"on uvloop in separate processes"
        )
        idle = s.get("idle_cpu_ms_per_s") or {}
        if idle:
            lines.append(
                "idle CPU (ms/s): "
                + ", ".join(f"{k} {fmt(v)}" for k, v in idle.items())
                + f"; machine busy before the bench: {100 * m.get('busy_before_start', 0):.0f}%"
            )
    probe = m.get("speed_probe_ns") or {}
    if probe:
        lines.append(
            "speed probe (sum(range(100)), best of 5; lower is faster, figures scale with it): "
            + ", ".join(f"{fmt(v)} ns at the {k}" for k, v in probe.items())
        )
    return lines


def render_ab(ab: dict[str, Any]) -> str:
    old, new, r = ab["old"], ab["new"], ab["ratios"]
    rows = [
        [
            "total p50 (ms)",
            old["total_ms"]["p50"],
            new["total_ms"]["p50"],
            r["total_p50"],
            f"<= {TARGET_TOTAL_RATIO}",
            verdict(ab["pass"]["total_ratio"]),
        ],
        ["total p95 (ms)", old["total_ms"]["p95"], new["total_ms"]["p95"], r["total_p95"], "", ""],
        [
            "first answer text p50 (ms)",
            old["first_text_ms"]["p50"],
            new["first_text_ms"]["p50"],
            r["first_text_p50"],
            f"<= {TARGET_FIRST_TEXT_RATIO} (of old total)",
            verdict(ab["pass"]["first_text_ratio"]),
        ],
        [
            "first answer text p95 (ms)",
            old["first_text_ms"]["p95"],
            new["first_text_ms"]["p95"],
            r["first_text_p95"],
            "",
            "",
        ],
        [
            "upstream's own time p50 (ms)",
            old["upstream"]["own_ms"]["p50"],
            new["upstream"]["own_ms"]["p50"],
            "",
            "",
            "",
        ],
        ["overhead p50 (ms)", old["overhead_ms"]["p50"], new["overhead_ms"]["p50"], "", "", ""],
        [
            "model calls / request",
            old["upstream"]["calls_per_request"],
            new["upstream"]["calls_per_request"],
            "",
            "",
            "",
        ],
        [
            "routing sources",
            counts(old["routing_sources"]),
            counts(new["routing_sources"]),
            "",
            "",
            "",
        ],
        [
            "requests / errors",
            pair(old["requests_sent"], old["errors"]),
            pair(new["requests_sent"], new["errors"]),
            "",
            "",
            "",
        ],
        ["RequestLog rows", rows_check(old), rows_check(new), "", "", ""],
    ]
    return table(
        f"1. Old design vs new default ({new['concurrency']} concurrent clients, "
        f"{new['requests_sent']} requests each; ratio = new / old)",
        ["", "old: llm + JSON", "new: hybrid + SSE", "ratio", "target", ""],
        rows,
        digits=2,
    )


def level_key(level: dict[str, Any]) -> tuple[int, str]:
    # Results saved before arrivals were a choice were all bursts.
    return level["concurrency"], level.get("arrival", "burst")


def level_name(level: dict[str, Any]) -> str:
    c, arrival = level_key(level)
    return f"c={c}" if c == 1 else f"c={c} {arrival}"


def render_overhead(levels: list[dict[str, Any]]) -> str:
    by_key = {level_key(lv): lv for lv in levels}
    at50, at500 = by_key.get(TARGET_OVERHEAD_LEVEL), by_key.get(TARGET_ERRORS_LEVEL)

    def each(get: Any) -> list[Any]:
        return [get(lv) for lv in levels]

    rows = [
        ["requests sent", *each(lambda lv: lv["requests_sent"]), "", ""],
        [
            "errors",
            *each(lambda lv: lv["errors"]),
            f"0 at c={TARGET_ERRORS_AT} burst",
            verdict(None if at500 is None else at500["errors"] == 0),
        ],
        [
            "RequestLog rows == sent",
            *each(rows_check),
            "every level",
            verdict(all(lv.get("rows_match") for lv in levels)),
        ],
        ["RequestLog statuses", *each(statuses), "", ""],
        [
            "overhead p50 (ms)",
            *each(lambda lv: lv["overhead_ms"]["p50"]),
            f"<= {TARGET_OVERHEAD_P50_MS:g} at c={TARGET_OVERHEAD_AT} steady",
            verdict(
                None if at50 is None else le(at50["overhead_ms"]["p50"], TARGET_OVERHEAD_P50_MS)
            ),
        ],
        ["overhead p95 (ms)", *each(lambda lv: lv["overhead_ms"]["p95"]), "", ""],
        [
            "overhead p99 (ms)",
            *each(lambda lv: lv["overhead_ms"]["p99"]),
            f"<= {TARGET_OVERHEAD_P99_MS:g} at c={TARGET_OVERHEAD_AT} steady",
            verdict(
                None if at50 is None else le(at50["overhead_ms"]["p99"], TARGET_OVERHEAD_P99_MS)
            ),
        ],
        [
            "  before the upstream call p50 / p99",
            *each(
                lambda lv: pair(lv["before_upstream_ms"]["p50"], lv["before_upstream_ms"]["p99"])
            ),
            "",
            "",
        ],
        [
            "  after the upstream's last byte p50 / p99",
            *each(lambda lv: pair(lv["after_upstream_ms"]["p50"], lv["after_upstream_ms"]["p99"])),
            "",
            "",
        ],
        [
            "total p50 / p95 (ms)",
            *each(lambda lv: pair(lv["total_ms"]["p50"], lv["total_ms"]["p95"])),
            "",
            "",
        ],
        [
            "first answer text p50 / p95 (ms)",
            *each(lambda lv: pair(lv["first_text_ms"]["p50"], lv["first_text_ms"]["p95"])),
            "",
            "",
        ],
        ["model calls / request", *each(lambda lv: lv["upstream"]["calls_per_request"]), "", ""],
        ["throughput (requests/s)", *each(lambda lv: lv["throughput_rps"]), "", ""],
        [
            "server CPU / request (ms)",
            *each(lambda lv: lv["cpu_ms_per_request"]["server"]),
            "drive down",
            "",
        ],
        [
            "  net of idle (ms)",
            *each(lambda lv: lv["cpu_ms_per_request_net_of_idle"]["server"]),
            "",
            "",
        ],
        [
            "fake upstream CPU / request (ms)",
            *each(lambda lv: lv["cpu_ms_per_request"]["fake_upstream"]),
            "",
            "",
        ],
        [
            "PostgreSQL CPU / request (ms)",
            *each(lambda lv: lv["cpu_ms_per_request"]["postgres"]),
            "",
            "",
        ],
        ["Redis CPU / request (ms)", *each(lambda lv: lv["cpu_ms_per_request"]["redis"]), "", ""],
        ["client CPU / request (ms)", *each(lambda lv: lv["cpu_ms_per_request"]["client"]), "", ""],
        [
            "client procs / loop lag p99 (ms)",
            *each(
                lambda lv: f"{lv['client']['processes']} / {fmt(lv['client']['loop_lag_p99_ms'])}"
            ),
            "",
            "",
        ],
        [
            "PostgreSQL connections: bench DB / all / max",
            *each(
                lambda lv: "{bench_db} / {server} / {max}".format(
                    **lv["postgres_connections_after"]
                )
            ),
            "",
            "",
        ],
        ["machine CPU busy (%)", *each(lambda lv: 100 * lv["machine_cpu_busy"]), "", ""],
        ["other processes' load (cores)", *each(lambda lv: lv["other_processes_cores"]), "~0", ""],
    ]
    text = table(
        "2. Overhead = client-observed total - the upstream's own time for that request "
        "(hybrid + SSE)",
        ["", *[level_name(lv) for lv in levels], "target", ""],
        rows,
    )
    kinds = {level_name(lv): lv["error_kinds"] for lv in levels if lv["error_kinds"]}
    if kinds:
        text += "\nerror kinds: " + "; ".join(f"{name}: {k}" for name, k in kinds.items())
    return text


def render_cache(cache: dict[str, Any]) -> str:
    rows = []
    for name in ("json", "sse"):
        c = cache[name]
        rows.append(
            [
                f"repeat, {name.upper()}",
                c["requests"],
                c["total_ms"]["p50"],
                c["total_ms"]["p95"],
                c["first_text_ms"]["p50"],
                f"{c['statuses'].get('cached', 0)}/{c['requests']}",
                f"p50 <= {TARGET_CACHE_P50_MS:g}",
                verdict(c["pass"]),
            ]
        )
    text = table(
        "3. Response cache hits (one request, then the same text again and again, one at a time)",
        ["", "requests", "p50 (ms)", "p95 (ms)", "first text p50 (ms)", "'cached'", "target", ""],
        rows,
        digits=2,
    )
    return (
        text + f"\nthe first request's status: {cache['prime_status']}; model calls during the "
        f"repeats: {cache['upstream_calls_during_repeats']} ({verdict(cache['no_upstream_calls'])})"
    )


def render_queries(queries: dict[str, Any]) -> str:
    rows = [
        [
            name,
            q["requests"],
            q["errors"],
            q["transactions"],
            q["per_request"],
            f"<= {TARGET_QUERIES:g}",
            verdict(q.get("pass")),
        ]
        for name, q in queries.items()
    ]
    text = table(
        "4. Database statements per request on a warm path "
        "(pg_stat_database xact_commit + xact_rollback; autocommit: 1 statement = 1 transaction)",
        ["path", "requests", "errors", "transactions", "per request", "target", ""],
        rows,
        digits=2,
    )
    for name, q in queries.items():
        tables = q.get("tables_per_request") or {}
        seen = "; ".join(
            f"{t} " + ", ".join(f"{k} {v:g}" for k, v in c.items())
            for t, c in sorted(tables.items())
        )
        text += f"\n{name}, per request by table (pg_stat_user_tables): {seen or 'nothing'}"
    return text


def render_cpu(cpu: dict[str, Any]) -> str:
    server = cpu["server"]
    capacity = f"~{2000 / server:.0f}" if server else "-"
    return (
        f"5. Server CPU per streamed request (gunicorn master + workers, utime+stime from /proc, "
        f"c={cpu['concurrency']}, {cpu.get('errors', 0)} errors): {fmt(server)} ms, {fmt(cpu['server_net_of_idle'])} ms net of "
        f"idle -> the app alone saturates 2 cores at {capacity} streamed requests/s.\n"
        f"   Same window, per request: fake upstream {fmt(cpu['fake_upstream'])} ms, PostgreSQL "
        f"{fmt(cpu['postgres'])} ms, Redis {fmt(cpu['redis'])} ms, client {fmt(cpu['client'])} ms."
    )


def render(report: dict[str, Any]) -> str:
    parts = ["\n".join(render_header(report))]
    if report.get("old_vs_new"):
        parts.append(render_ab(report["old_vs_new"]))
    if report.get("overhead"):
        parts.append(render_overhead(report["overhead"]))
    if report.get("cache"):
        parts.append(render_cache(report["cache"]))
    if report.get("queries"):
        parts.append(render_queries(report["queries"]))
    if report.get("server_cpu_per_streamed_request_ms"):
        parts.append(render_cpu(report["server_cpu_per_streamed_request_ms"]))
    verdicts = report.get("verdicts") or {}
    if verdicts:
        failed = [k for k, v in verdicts.items() if v is False]
        lines = ["Targets", "======="]
        lines += [f"  {verdict(v) or 'n/a ':4}  {k}" for k, v in verdicts.items()]
        lines.append(f"FAILED: {len(failed)} of {len(verdicts)}" if failed else "all targets met")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
