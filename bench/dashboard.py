"""Time the admin's timing dashboard over a 30-day view of 1,000,000 logged requests.

Creates its own PostgreSQL database (``dash_bench`` on 127.0.0.1:5432, dropped first if a
previous run left it, and dropped at the end), migrates it, seeds the request log with one
INSERT ... SELECT over generate_series (every row inside the last 30 days, four routes,
realistic text and answer widths), VACUUM ANALYZEs it as autovacuum would, then times:

- ``timing_dashboard_get`` for the last 30 days (the one selector the page, the CSV export
  and the stats API read), first call and the median of the next ones;
- the dashboard page itself, through Django's test client as a superuser;
- with ``--compare``, the same selector after dropping the covering index
  ``reqlog_time_figures`` (what the index buys).

    .venv/bin/python bench/dashboard.py              # about 2-3 minutes on the dev machine
    .venv/bin/python bench/dashboard.py --rows 200000 --compare

Bounded: one seed, a fixed number of timed calls, a statement timeout on every query.
"""

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE = "dash_bench"
SERVER = "postgres://postgres@127.0.0.1:5432"
TARGET_S = 1.0
STATEMENT_TIMEOUT_MS = 60_000

SEED_SQL = """
INSERT INTO requestlogs_requestlog (
    id, created_at, finished_at, user_id, channel, location, text, requested_route,
    route_id, routing_source, confidence, status, answer, error, backend, model,
    tokens_in, tokens_out, upstream_calls, cached, escalated, escalated_at,
    corrected_route_id, corrected_at, feedback_helpful, feedback_comment, feedback_at,
    routing_ms, ttft_ms, assistant_ms, total_ms
)
SELECT
    gen_random_uuid(),
    t.created_at,
    t.created_at + make_interval(secs => t.total / 1000.0),
    NULL,
    CASE WHEN t.i %% 3 = 0 THEN 'api' ELSE 'web' END,
    (ARRAY['Bedford', 'Dartmouth', 'Halifax Downtown', 'Truro'])[1 + t.i %% 4],
    (ARRAY[
        'TrackMan frozen in bay 3, the screen shows the last shot and will not respond',
        'Customer locked out, the door code from the confirmation email does not work',
        'Can we extend a booking in bay 5 by 30 minutes?',
        'Write a friendly reply to a 3-star review about slow check-in'
    ])[1 + t.i %% 4],
    'auto',
    (%(routes)s::bigint[])[1 + (t.i * 7) %% array_length(%(routes)s::bigint[], 1)],
    (ARRAY['manual', 'rules', 'local', 'llm', 'default'])[1 + (t.i * 13) %% 5],
    0.5 + random() / 2,
    CASE
        WHEN t.i %% 97 = 0 THEN 'timeout'
        WHEN t.i %% 89 = 0 THEN 'error'
        WHEN t.i %% 11 = 0 THEN 'cached'
        WHEN t.i %% 83 = 0 THEN 'escalated'
        ELSE 'ok'
    END,
    repeat('1. Restart the TrackMan app from the bay PC. 2. Power-cycle the unit. ', 6),
    '',
    'openai-responses',
    'gpt-4.1-mini',
    400, 120, 1,
    t.i %% 11 = 0,
    t.i %% 83 = 0,
    NULL, NULL, NULL,
    CASE WHEN t.i %% 7 = 0 THEN t.i %% 4 <> 0 END,
    '',
    NULL,
    t.routing,
    t.ttft,
    t.total - t.routing - 5,
    t.total
FROM (
    SELECT
        i,
        now() - random() * make_interval(days => %(days)s) AS created_at,
        random() * 3 AS routing,
        200 + random() * 600 AS ttft,
        800 + random() * 4000 AS total
    FROM generate_series(1, %(rows)s) AS i
) AS t
"""


def timed(call: Callable[[], Any], repeats: int) -> tuple[float, float, list[float]]:
    """(first call, median of the next ``repeats``) in seconds, and those times."""
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--days",
        type=int,
        default=365,
        help="the span the rows are spread over (30: every row is in the 30-day view)",
    )
    parser.add_argument("--compare", action="store_true", help="also time without the index")
    parser.add_argument("--keep", action="store_true", help="leave the database for a look")
    args = parser.parse_args()

    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="clubos.settings",
        DJANGO_SECRET_KEY="dashboard-bench-only",
        DJANGO_ALLOWED_HOSTS="testserver",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DATABASE_URL=f"{SERVER}/{DATABASE}",
        DATABASE_POOL="0",
    )
    os.environ.pop("REDIS_URL", None)
    try:
        return run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def run(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from datetime import timedelta

    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from requestlogs.stats import timing_dashboard_get
    from routing.models import Route

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    routes = list(Route.objects.order_by("pk").values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS * 10}")
        cursor.execute(SEED_SQL, {"rows": args.rows, "routes": routes, "days": args.days})
        cursor.execute("SET statement_timeout = 0")
        cursor.execute("VACUUM ANALYZE requestlogs_requestlog")
        cursor.execute(
            "SELECT pg_size_pretty(pg_table_size('requestlogs_requestlog')),"
            " pg_size_pretty(pg_relation_size('reqlog_time_figures'))"
        )
        table_size, index_size = cursor.fetchone()
        cursor.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
    print(
        f"seeded {args.rows:,} rows over {args.days} days in {time.perf_counter() - started:.0f} s "
        f"(table {table_size}, covering index {index_size})"
    )

    def selector() -> Any:
        until = timezone.now()
        return timing_dashboard_get(
            since=until - timedelta(days=30), until=until, bucket=timedelta(days=1)
        )

    dashboard = selector()
    overall = dashboard.rows[-1]
    print(
        f"30-day view: {overall['count']:,} requests, {len(dashboard.rows) - 1} routes, "
        f"{len(dashboard.series)} buckets; total p50 {overall['total_ms']['p50']:.0f} ms, "
        f"p95 {overall['total_ms']['p95']:.0f} ms"
    )
    first, median, times = timed(selector, args.repeats)
    ok = median < TARGET_S
    print(
        f"selector timing_dashboard_get, 30 days: first {first * 1000:.0f} ms, "
        f"median of {args.repeats} {median * 1000:.0f} ms "
        f"(all: {', '.join(f'{t * 1000:.0f}' for t in times)}) "
        f"target < {TARGET_S * 1000:.0f} ms: {'PASS' if ok else 'FAIL'}"
    )

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN SELECT route_id, count(*), percentile_cont(0.5) WITHIN GROUP "
            "(ORDER BY total_ms) FROM requestlogs_requestlog "
            "WHERE created_at >= now() - interval '30 days' AND created_at < now() "
            "GROUP BY route_id"
        )
        scans = [line for (line,) in cursor.fetchall() if "Scan" in line]
    print("plan of the per-route query: " + " / ".join(s.strip(" ->") for s in scans))

    user = User.objects.create_superuser("bench", "bench@clubos.test", None)
    # Static files by their plain names: collectstatic has not run in a checkout.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    client = Client()
    client.force_login(user)

    def page() -> Any:
        response = client.get("/admin/requestlogs/requestlog/dashboard/", {"period": "30d"})
        assert response.status_code == 200, response.status_code
        return response

    first, median, times = timed(page, args.repeats)
    print(
        f"dashboard page, 30 days (test client): first {first * 1000:.0f} ms, "
        f"median of {args.repeats} {median * 1000:.0f} ms"
    )

    if args.compare:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX reqlog_time_figures")
            cursor.execute("ANALYZE requestlogs_requestlog")
        first, median, times = timed(selector, args.repeats)
        print(
            f"selector without reqlog_time_figures: first {first * 1000:.0f} ms, "
            f"median of {args.repeats} {median * 1000:.0f} ms"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
