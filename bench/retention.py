"""How fast retention deletes, and what a purge costs the requests written beside it.

    DATABASE_URL=postgres://... .venv/bin/python bench/retention.py [--rows 50000] [--batch 1000]

On the database of DATABASE_URL (PostgreSQL; migrated here), it writes ``--rows`` requests
from 40 days ago (one in ten with a Slack alert), then measures:

1. INSERT latency of a new request row (the request path's first write, through the ORM)
   from another connection, one every 10 ms, with no purge running: p50/p99/max ms;
2. the same while ``request_logs_delete_older_than(days=30, batch_size=--batch)`` runs:
   p50/p99/max ms, and the purge's rate (requests/s) and its batches' duration p50/max ms
   (each batch is one transaction: the longest any of its row locks is held).

Everything it writes is deleted again. Not a test: figures go to bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clubos.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")


def _ms(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"p50 {statistics.median(ordered):.2f} ms, p99 {p99:.2f} ms, max {ordered[-1]:.2f} ms "
        f"({len(ordered)} inserts)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from requestlogs.models import Alert, AlertKind, AlertState, RequestLog
    from requestlogs.services import PurgeProgress, request_logs_delete_older_than

    if connection.vendor != "postgresql":
        sys.exit("set DATABASE_URL to a PostgreSQL database")
    call_command("migrate", verbosity=0)

    old_at = timezone.now() - timedelta(days=40)
    print(f"writing {args.rows:,} requests from 40 days ago...", flush=True)
    for start in range(0, args.rows, 5000):
        logs = RequestLog.objects.bulk_create(
            RequestLog(
                created_at=old_at,
                text="TrackMan frozen in bay 3, the screen shows the last shot",
                answer="1. Restart the TrackMan app.\n2. Power-cycle the unit." * 4,
                status="ok",
            )
            for _ in range(min(5000, args.rows - start))
        )
        Alert.objects.bulk_create(
            Alert(
                request=log,
                kind=AlertKind.ESCALATION,
                state=AlertState.SENT,
                queued_at=old_at,
            )
            for log in logs[::10]
        )

    written: list[object] = []

    def insert_beside(stop: threading.Event, latencies: list[float]) -> None:
        from django.db import connection as own

        try:
            while not stop.is_set():
                started = time.perf_counter()
                log = RequestLog.objects.create(
                    created_at=timezone.now(), text="Projector in bay 2 is flickering"
                )
                latencies.append((time.perf_counter() - started) * 1000)
                written.append(log.pk)
                stop.wait(0.01)
        finally:
            own.close()

    def with_inserts(work: object) -> list[float]:
        latencies: list[float] = []
        stop = threading.Event()
        thread = threading.Thread(target=insert_beside, args=(stop, latencies))
        thread.start()
        try:
            work()  # type: ignore[operator]
        finally:
            stop.set()
            thread.join()
        return latencies

    quiet = with_inserts(lambda: time.sleep(3))
    print(f"INSERT, no purge:      {_ms(quiet)}")

    batch_ms: list[float] = []
    last = [time.monotonic()]
    result: list[PurgeProgress] = []

    def on_batch(step: PurgeProgress) -> None:
        now = time.monotonic()
        batch_ms.append((now - last[0]) * 1000)
        last[0] = now

    def purge() -> None:
        last[0] = time.monotonic()
        result.append(
            request_logs_delete_older_than(days=30, batch_size=args.batch, progress=on_batch)
        )

    during = with_inserts(purge)
    done = result[0]
    print(f"INSERT, during purge:  {_ms(during)}")
    print(
        f"purge: {done.requests:,} requests + {done.alerts:,} alerts in {done.batches} batches of "
        f"{args.batch:,}, {done.elapsed_s:.1f} s = {done.requests_per_s:,.0f} requests/s; "
        f"batch p50 {statistics.median(batch_ms):.1f} ms, max {max(batch_ms):.1f} ms"
    )
    RequestLog.objects.filter(pk__in=written).delete()


if __name__ == "__main__":
    main()
