"""Metrics under gunicorn: the project's ``gunicorn.conf.py`` with two worker processes,
prometheus-client in multiprocess mode. Whichever worker answers a scrape, it counts every
worker's requests; a worker that dies leaves its counts in the totals and its gauges (its
CPU, memory, pools) out of the scrape; and each request's JSON line is on the server's log."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from accounts.services import api_token_create
from tests.requestlogs.api_factories import default_routes_ensure
from tests.requestlogs.factories import UserFactory
from tests.requestlogs.processes import ROOT, free_port, process_env, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "scrape-secret-for-gunicorn"
SUBMITS = 6


def scrape(base: str) -> list[tuple[str, dict[str, str], float]]:
    response = httpx2.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def worker_pids(samples: list[tuple[str, dict[str, str], float]]) -> set[str]:
    return {labels["pid"] for name, labels, _ in samples if name == "process_start_time_seconds"}


def submits_counted(samples: list[tuple[str, dict[str, str], float]]) -> float:
    return sum(value for name, _, value in samples if name == "clubos_requests_total")


def healthy(base: str) -> bool:
    try:
        return httpx2.get(f"{base}/api/v1/health/", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


def test_two_workers_one_scrape_and_a_dead_worker_forgotten(tmp_path: Path) -> None:
    default_routes_ensure()
    _, key = api_token_create(user=UserFactory())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "gunicorn.log"
    env = process_env(
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="2",
        METRICS_BEARER_TOKEN=TOKEN,
        METRICS_REFRESH_S="0.2",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # gunicorn.conf.py makes its own
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        wait_for(lambda: healthy(base) or server.poll() is not None, timeout_s=90, what="gunicorn")
        assert server.poll() is None, log_path.read_text()
        # Both workers up (each writes its process gauges at start-up).
        wait_for(lambda: len(worker_pids(scrape(base))) == 2, timeout_s=60, what="two workers")

        ids = []
        for _ in range(SUBMITS):
            # A new connection each: the workers share the listening socket.
            response = httpx2.post(
                f"{base}/api/v1/requests/",
                json={"text": "TrackMan frozen in bay 3", "route": "tech"},
                headers={"Authorization": f"Token {key}", "Connection": "close"},
                timeout=30,
            )
            assert response.status_code == 201, response.text
            assert response.headers["X-Request-ID"] == response.json()["id"]
            ids.append(response.headers["X-Request-ID"])

        samples = scrape(base)
        assert submits_counted(samples) == SUBMITS
        stages = [
            value
            for name, labels, value in samples
            if name == "clubos_request_stage_seconds_count" and labels["stage"] == "total"
        ]
        assert sum(stages) == SUBMITS
        pids = worker_pids(samples)
        assert len(pids) == 2
        for metric in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
            assert {labels["pid"] for name, labels, _ in samples if name == metric} == pids
        if connection.vendor == "postgresql":
            # Both pools of both workers, summed: the event loop's opens 2 at each start-up.
            pools = {
                labels["pool"]: value
                for name, labels, value in samples
                if name == "clubos_db_pool_connections"
            }
            assert pools["event_loop"] == 4
            assert pools["orm"] >= 1

        dead = sorted(pids)[0]
        os.kill(int(dead), signal.SIGKILL)
        # gunicorn's master replaces the worker; its child_exit hook drops the dead one's gauges.
        wait_for(
            lambda: (now := worker_pids(scrape(base))) and dead not in now and len(now) == 2,
            timeout_s=60,
            what="the dead worker's gauges to go and its replacement's to come",
        )
        assert submits_counted(scrape(base)) == SUBMITS
    finally:
        stop(server)

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line[:1] == "{"]
    submitted = [line for line in lines if line.get("path") == "/api/v1/requests/"]
    assert sorted(line["request_id"] for line in submitted) == sorted(ids)
    assert {(line["status"], line["request_status"], line["route"]) for line in submitted} == {
        (201, "ok", "tech")
    }
