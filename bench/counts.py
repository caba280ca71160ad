"""Count, for one warm request: database queries, and model calls for each way of routing.

Runs in-process on the embedded default (a throwaway SQLite file) with the project's fake
OpenAI server on loopback, through the real API view (the pipeline's upstream calls through aiohttp, the LLM router's
through the openai SDK):

    .venv/bin/python bench/counts.py
"""

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.fake_openai import FakeOpenAI  # noqa: E402


def main() -> None:
    fake = FakeOpenAI()
    fake.start()
    workdir = tempfile.mkdtemp(prefix="clubos-counts-")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="clubos.settings",
        DJANGO_SECRET_KEY="counts-only",
        DJANGO_ALLOWED_HOSTS="testserver",
        # Plain HTTP: no redirect to https.
        DJANGO_SECURE_SSL_REDIRECT="0",
        # Throttling on, at a per-user rate these many submits from one user never reach.
        THROTTLE_SUBMIT_RATE="1000000/min",
        DATABASE_URL=f"sqlite:///{workdir}/db.sqlite3",
        OPENAI_API_KEY="fake",
        OPENAI_BASE_URL=fake.base_url,
        # The warm path: a checked token is not looked up again (with Redis, while the shared
        # auth version is unchanged; here, with no Redis, for API_TOKEN_CACHE_S).
        API_TOKEN_CACHE_S="60",
    )
    for name in ("REDIS_URL", "ASSISTANT_BACKEND"):
        os.environ.pop(name, None)
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.services import api_token_create
    from config.services import system_config_update

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("counts")
    client = Client(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user)[1]}")

    async def read_all(content: Any) -> None:
        async for _ in content:
            pass

    def post(route: str, stream: bool) -> tuple[dict, int]:
        headers = {"HTTP_ACCEPT": "text/event-stream"} if stream else {}
        with CaptureQueriesContext(connection) as queries:
            response = client.post(
                "/api/v1/requests/",
                {"text": "TrackMan frozen in bay 3", "route": route},
                content_type="application/json",
                **headers,
            )
            if stream:
                async_to_sync(read_all)(response.streaming_content)
        return (response.json() if not stream else {}), len(queries.captured_queries)

    print(
        "database queries per warm API request (INSERT, UPDATE; a checked token is remembered, accounts.authentication):"
    )
    for route in ("tech", "auto"):
        for stream in (False, True):
            post(route, stream)  # warm the caches
            _, n = post(route, stream)
            print(f"  route={route:<5} {'SSE ' if stream else 'JSON'}  {n}")

    print("model calls per request, as the fake upstream saw them:")
    for strategy, route in (("hybrid", "tech"), ("hybrid", "auto"), ("llm", "auto")):
        system_config_update(routing_strategy=strategy)
        fake.reset()
        body, _ = post(route, stream=False)
        calls = [c for c in fake.calls if c.path != "/v1/models"]
        print(
            f"  strategy={strategy:<6} route={route:<5} decided by {body['routing']['source']:<6}"
            f" -> {len(calls)} call(s): {', '.join(c.path for c in calls)}"
        )
    fake.stop()


if __name__ == "__main__":
    main()
