"""What monitoring costs a request: the metrics, the request id and the JSON log line.

Two parts:

1. ``calls`` (default; no database, a second or two): each per-request step timed over many
   calls, in-process (``make run``, tests) and in multiprocess mode (gunicorn: values in
   memory-mapped files; a child process, as prometheus-client picks its mode on import):
   ``request_observe`` (the submit's counter and four stage histograms, once per submit),
   an upstream error's count, the request id (``RequestContext`` and its header value), the
   JSON log line (its fields, the formatting, the write to a file) and the formatting alone.
2. ``--server`` (instead; about a minute): the CPU per streamed submit of one process serving ``clubos.asgi`` on its
   event loop (uvloop, as a worker), in alternating rounds with monitoring on and off (off:
   the handler built without ``RequestIdMiddleware`` and ``request_observe`` a no-op), as
   ``bench/lent_threads.py`` measures. The fake upstream runs in its own process (0.3 s to
   the first token, 1.5 s per call). Uses the ``clubos_bench`` database and Redis db 2 that
   ``bench/run.py`` leaves behind (run that first), as ``bench/lent_threads.py`` does.

    .venv/bin/python bench/metrics_cost.py
    .venv/bin/python bench/metrics_cost.py --server [--clients 50] [--requests 250] [--rounds 3]
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DJANGO_SECRET_KEY", "bench-metrics-cost")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clubos.settings")


def per_call_us(fn: Any, number: int) -> float:
    """The best of nine runs of ``number`` calls, in microseconds per call: on a shared
    machine the best run is the one least disturbed by other processes."""
    return min(timeit.repeat(fn, number=number, repeat=9)) / number * 1e6


def calls() -> dict[str, float]:
    """Each step's cost per call in this process's mode (microseconds)."""
    import django

    django.setup()
    from django.test import RequestFactory
    from django.utils import timezone

    from assistants.metrics import upstream_error_count
    from clubos.monitoring import request_line_log
    from config.request_context import RequestContext
    from requestlogs.metrics import request_observe
    from requestlogs.models import RequestLog

    log = RequestLog(
        created_at=timezone.now(),
        text="TrackMan frozen in bay 3",
        status="ok",
        routing_source="manual",
        upstream_calls=1,
        routing_ms=0.004,
        ttft_ms=312.5,
        assistant_ms=1512.25,
        total_ms=1530.75,
    )
    context = RequestContext()
    request_observe(log=log, route="tech", context=context)  # the labels' children, made once
    request = RequestFactory().post("/api/v1/requests/", REMOTE_ADDR="192.0.2.10")
    request.user = None  # type: ignore[assignment]

    handler = next(h for h in logging.getLogger("clubos.requests").handlers)
    assert handler.formatter is not None
    with open(os.devnull, "w") as devnull:
        handler.setStream(devnull)  # type: ignore[attr-defined]
        records: list[logging.LogRecord] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record)

        keep = Keep()
        logging.getLogger("clubos.requests").addHandler(keep)
        request_line_log(request, context, 201)
        logging.getLogger("clubos.requests").removeHandler(keep)
        record = records[0]
        formatter = handler.formatter
        result = {
            "request_observe": per_call_us(
                lambda: request_observe(log=log, route="tech", context=context), 20_000
            ),
            "upstream_error_count": per_call_us(
                lambda: upstream_error_count(backend="openai-responses", kind="server_error"),
                50_000,
            ),
            "request_id": per_call_us(lambda: str(RequestContext().id), 50_000),
            "log_line": per_call_us(lambda: request_line_log(request, context, 201), 20_000),
            "log_line_formatting": per_call_us(lambda: formatter.format(record), 20_000),
        }
    logging.getLogger("clubos.requests").setLevel(logging.WARNING)
    result["log_line_off"] = per_call_us(lambda: request_line_log(request, context, 201), 50_000)
    return result


def calls_report() -> None:
    in_process = calls()
    with tempfile.TemporaryDirectory(prefix="clubos-metrics-bench-") as directory:
        child = subprocess.run(
            [sys.executable, __file__, "--child"],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory},
            capture_output=True,
            check=True,
            cwd=ROOT,
        )
    multiprocess = json.loads(child.stdout.decode().strip().splitlines()[-1])
    print("microseconds per call (best of 9 runs)      in-process  multiprocess")
    labels = {
        "request_observe": "request_observe (1 counter + 4 histograms)",
        "upstream_error_count": "upstream error count (per failed call)",
        "request_id": "request id (uuid4, its header value)",
        "log_line": "JSON log line (fields, format, write)",
        "log_line_formatting": "  of which the formatting",
        "log_line_off": "log line with REQUEST_LOG_LEVEL=WARNING",
    }
    for key, label in labels.items():
        print(f"  {label:43s} {in_process[key]:9.2f}  {multiprocess[key]:12.2f}")


# --- Part 2: a serving process's CPU per request, monitoring on and off --------------------


async def serve_rounds(args: argparse.Namespace) -> None:
    from django.conf import settings
    from django.core.handlers.asgi import ASGIHandler
    from django.test import override_settings

    import clubos.asgi as served
    import requestlogs.pipeline as pipeline
    from bench.lent_threads import app_started, round_of, rounds_summary

    with override_settings(
        MIDDLEWARE=[m for m in settings.MIDDLEWARE if not m.endswith("RequestIdMiddleware")]
    ):
        without_middleware = ASGIHandler()
    handlers = {"on": served.django_application, "off": without_middleware}
    observe = pipeline.request_observe

    def unobserved(**kwargs: Any) -> None:
        return None

    def use(way: str) -> None:
        # LentThreads serves whatever clubos.asgi.django_application is when a request comes.
        served.django_application = handlers[way]
        pipeline.request_observe = observe if way == "on" else unobserved  # type: ignore[assignment]

    results: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    async with app_started("bench-metrics") as headers:
        for way in results:  # warm-up
            use(way)
            await round_of(served.served, way, args.clients, args.clients, headers)
        for _ in range(args.rounds):
            for way in results:
                use(way)
                results[way].append(
                    await round_of(served.served, way, args.clients, args.requests, headers)
                )
        use("on")
    print(
        f"\nserver CPU per streamed submit, {args.clients} concurrent clients, "
        f"{args.rounds} rounds of {args.requests} each way (alternating)"
    )
    for way, rounds in results.items():
        print(f"  monitoring {way:3s}  {rounds_summary(rounds)}")


def server_report(args: argparse.Namespace) -> None:
    # bench/lent_threads.py's environment (the clubos_bench database a full bench/run.py
    # leaves behind, Redis db 2, its fake upstream's port), set as it is imported.
    from bench.lent_threads import run_beside_the_fake_upstream

    # The log lines go to a file, as a server's stderr would to its collector.
    os.environ["REQUEST_LOG_LEVEL"] = "INFO"

    async def measured() -> None:
        with tempfile.TemporaryFile("w") as lines:
            handler = logging.getLogger("clubos.requests").handlers[0]
            handler.setStream(lines)  # type: ignore[attr-defined]
            logging.getLogger().setLevel(logging.WARNING)
            await serve_rounds(args)

    run_beside_the_fake_upstream(measured)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", action="store_true", help="the serving process's CPU")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(calls()))
    elif arguments.server:
        server_report(arguments)
    else:
        calls_report()
