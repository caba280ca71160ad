"""The bench's line of control into the app: one Django process, JSON commands on stdin.

Django with ClubOS's imports takes several seconds to set up (scikit-learn, openai), so the bench
starts this once, with the same environment as the server, and sends it one JSON object per
line; each answer is one JSON line on stdout (logging goes to stderr).

Commands (``op``):
  ``token``   the bench user's API token (user and token created if missing)
  ``config``  ``system_config_update(**changes)``: the app's own service, which also drops
              the cached config in Redis
  ``logs``    RequestLog rows whose text contains ``contains``: count, by status, by routing
              source, the sum of their upstream calls
  ``quit``
It keeps one database connection open from the start, so it still gets answers when the app under
load has taken every other connection PostgreSQL allows; it sends nothing while the bench measures.
"""

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clubos.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count, Sum  # noqa: E402

from accounts.services import api_token_create  # noqa: E402
from config.services import system_config_update  # noqa: E402
from requestlogs.models import RequestLog  # noqa: E402

BENCH_USER = "bench"


def op_token() -> dict[str, Any]:
    user, _ = get_user_model().objects.get_or_create(username=BENCH_USER)
    _, key = api_token_create(user=user)
    return {"token": key}


def op_config(changes: dict[str, Any]) -> dict[str, Any]:
    row = system_config_update(**changes)
    return {name: getattr(row, name) for name in changes}


def op_logs(contains: str) -> dict[str, Any]:
    rows = RequestLog.objects.filter(text__contains=contains)
    by_status = dict(rows.values_list("status").annotate(n=Count("pk")).order_by())
    by_source = dict(rows.values_list("routing_source").annotate(n=Count("pk")).order_by())
    total = rows.aggregate(n=Count("pk"), upstream=Sum("upstream_calls"))
    return {
        "count": total["n"],
        "upstream_calls": total["upstream"] or 0,
        "by_status": by_status,
        "by_source": by_source,
    }


def handle(command: dict[str, Any]) -> dict[str, Any]:
    op = command.get("op")
    if op == "token":
        return op_token()
    if op == "config":
        return op_config(command["changes"])
    if op == "logs":
        return op_logs(command["contains"])
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    connection.ensure_connection()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if command.get("op") == "quit":
            break
        try:
            answer = {"ok": True, **handle(command)}
        except Exception as exc:
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            connection.close()  # a broken connection is reopened by the next command
        print(json.dumps(answer, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
