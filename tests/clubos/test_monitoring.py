"""Monitoring: the Prometheus endpoint and who may read it, the metrics a submit leaves
behind, the request id every response carries, and each request's JSON log line."""

import asyncio
import ipaddress
import json
import logging
import uuid
from collections.abc import Callable

import pytest
from django.test import Client
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pythonjsonlogger.json import JsonFormatter

from config.services import system_config_update
from devtools.asgi import post_scope
from requestlogs.models import RequestLog
from tests.requestlogs.api_factories import default_routes_ensure, token_client, token_header
from tests.requestlogs.factories import UserFactory
from tests.requestlogs.test_api_stream import SSE, parse_sse, streamed

pytestmark = pytest.mark.django_db

METRICS = "/metrics"
SUBMIT = "/api/v1/requests/"
TOKEN = "scrape-secret-0123456789"
TEXT = "TrackMan frozen in bay 3, customer waiting"


def scrape(client: Client, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The endpoint's samples: (name, sorted labels) -> value."""
    response = client.get(METRICS, headers={"Authorization": f"Bearer {TOKEN}", **headers})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def with_token(settings) -> None:
    settings.METRICS_BEARER_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []


@pytest.fixture
def request_lines(caplog, monkeypatch) -> Callable[[], list[logging.LogRecord]]:
    """The records of the ``clubos.requests`` logger, through caplog's handler on the root
    logger (in production that logger has its own JSON handler and does not propagate)."""
    # Importing the ASGI application runs django.setup() once more, which applies LOGGING
    # again: done first, so that it does not undo the patch.
    import clubos.asgi  # noqa: F401

    monkeypatch.setattr(logging.getLogger("clubos.requests"), "propagate", True)
    caplog.set_level(logging.INFO, logger="clubos.requests")
    return lambda: [r for r in caplog.records if r.name == "clubos.requests"]


def json_line(record: logging.LogRecord) -> dict:
    """The record as the configured handler writes it: one JSON object on one line."""
    [formatter] = [
        h.formatter
        for h in logging.getLogger("clubos.requests").handlers
        if isinstance(h.formatter, JsonFormatter)
    ]
    line = formatter.format(record)
    assert "\n" not in line
    return json.loads(line)


# --- Who may read the metrics ---------------------------------------------------------------


class TestEndpointProtection:
    def test_with_no_token_and_no_address_list_the_endpoint_does_not_exist(self, client, settings):
        settings.METRICS_BEARER_TOKEN = ""
        settings.METRICS_ALLOWED_IPS = []

        assert client.get(METRICS).status_code == 404

    def test_a_token_is_required_and_checked(self, client, with_token):
        missing = client.get(METRICS)
        wrong = client.get(METRICS, headers={"Authorization": "Bearer not-the-token"})
        api_scheme = client.get(METRICS, headers={"Authorization": f"Token {TOKEN}"})
        right = client.get(METRICS, headers={"Authorization": f"Bearer {TOKEN}"})

        assert [missing.status_code, wrong.status_code, api_scheme.status_code] == [401] * 3
        assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert right.status_code == 200
        assert b"# TYPE clubos_requests_total counter" in right.content

    def test_an_address_list_admits_its_networks_only(self, client, settings):
        settings.METRICS_BEARER_TOKEN = ""
        settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.1.0.0/16")]

        inside = client.get(METRICS, REMOTE_ADDR="10.1.2.3")
        outside = client.get(METRICS, REMOTE_ADDR="10.2.0.1")
        # No proxy is trusted (TRUSTED_PROXY_COUNT=0): a forged X-Forwarded-For changes nothing.
        forged = client.get(METRICS, REMOTE_ADDR="10.2.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3")

        assert (inside.status_code, outside.status_code, forged.status_code) == (200, 403, 403)

    def test_behind_a_trusted_proxy_the_forwarded_address_is_checked(self, client, settings):
        settings.METRICS_BEARER_TOKEN = ""
        settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.1.2.3/32")]
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

        via_proxy = client.get(METRICS, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3")
        other = client.get(METRICS, REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="10.9.9.9")

        assert (via_proxy.status_code, other.status_code) == (200, 403)

    def test_with_both_set_both_must_pass(self, client, settings):
        settings.METRICS_BEARER_TOKEN = TOKEN
        settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.1.0.0/16")]
        bearer = {"Authorization": f"Bearer {TOKEN}"}

        assert client.get(METRICS, headers=bearer, REMOTE_ADDR="10.1.0.9").status_code == 200
        assert client.get(METRICS, headers=bearer, REMOTE_ADDR="192.0.2.1").status_code == 403
        assert client.get(METRICS, REMOTE_ADDR="10.1.0.9").status_code == 401

    def test_a_plain_http_scrape_is_not_redirected_to_https(self, settings, with_token):
        settings.SECURE_SSL_REDIRECT = True
        client = Client()  # its middleware is built with the setting above

        assert client.get("/api/v1/routes/").status_code == 301  # everything else is
        assert client.get(METRICS, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


# --- What a submit leaves in the metrics ------------------------------------------------------


class TestSubmitMetrics:
    def test_a_submit_counts_by_status_and_source_and_times_each_stage(
        self, client, with_token, openai_upstream
    ):
        default_routes_ensure()
        api = token_client(UserFactory())
        ok = {"route": "tech", "status": "ok", "routing_source": "manual"}
        before = scrape(client)

        assert api.post(SUBMIT, {"text": TEXT, "route": "tech"}, format="json").status_code == 201

        after = scrape(client)

        def delta(name: str, **labels: str) -> float:
            key = (name, tuple(sorted(labels.items())))
            return after.get(key, 0.0) - before.get(key, 0.0)

        assert delta("clubos_requests_total", **ok) == 1
        for stage in ("routing", "first_text", "assistant", "total"):
            assert delta("clubos_request_stage_seconds_count", route="tech", stage=stage) == 1
        total_s = delta("clubos_request_stage_seconds_sum", route="tech", stage="total")
        row = RequestLog.objects.get()
        assert total_s == pytest.approx(row.total_ms / 1000)
        # Beside them, the process's CPU and memory (prometheus-client's own collector).
        assert after[("process_cpu_seconds_total", ())] > 0
        assert after[("process_resident_memory_bytes", ())] > 0

    @pytest.mark.parametrize(
        ("fail", "kind"),
        [("500", "server_error"), ("429", "rate_limited"), ("disconnect", "disconnect")],
    )
    def test_upstream_failures_count_by_kind_and_open_the_breaker(
        self, client, with_token, openai_upstream, settings, fail, kind
    ):
        settings.ASSISTANT_BREAKER_THRESHOLD = 1
        default_routes_ensure()
        system_config_update(assistant_retries=0)
        openai_upstream.configure(fail=fail)
        backend = {"backend": "openai-responses"}
        errors = value("clubos_upstream_errors_total", kind=kind, **backend)

        response = token_client(UserFactory()).post(
            SUBMIT, {"text": TEXT, "route": "tech"}, format="json"
        )

        assert response.json()["status"] == "error"
        assert value("clubos_upstream_errors_total", kind=kind, **backend) == errors + 1
        samples = scrape(client)
        assert samples[("clubos_circuit_breaker_open", tuple(backend.items()))] == 1
        key = ("clubos_circuit_breaker_consecutive_failures", tuple(backend.items()))
        assert samples[key] == 1

    def test_the_database_pools_in_use_and_waiting_are_read_at_the_scrape(self, client, with_token):
        from django.db import connection

        if connection.vendor != "postgresql" or not connection.settings_dict["OPTIONS"].get("pool"):
            pytest.skip("the ORM's connection pool is PostgreSQL's")
        samples = scrape(client)

        pool = (("pool", "orm"),)
        size = samples[("clubos_db_pool_connections", pool)]
        in_use = samples[("clubos_db_pool_connections_in_use", pool)]
        # This test's own connection (its transaction) is out of the pool.
        assert size >= in_use >= 1
        assert samples[("clubos_db_pool_requests_waiting", pool)] == 0


# --- The request id -----------------------------------------------------------------------------


class TestRequestId:
    def test_a_json_submit_answers_its_row_id_in_the_header(self, openai_upstream):
        default_routes_ensure()
        response = token_client(UserFactory()).post(
            SUBMIT, {"text": TEXT, "route": "tech"}, format="json"
        )

        assert response.status_code == 201
        assert response["X-Request-ID"] == response.json()["id"]
        assert RequestLog.objects.filter(pk=response["X-Request-ID"]).exists()

    def test_a_streamed_submit_has_the_header_before_its_first_event(self, openai_upstream):
        default_routes_ensure()
        response = token_client(UserFactory()).post(
            SUBMIT, {"text": TEXT, "route": "tech"}, format="json", headers=SSE
        )
        header = response["X-Request-ID"]  # with the headers, before the body is read

        events = parse_sse(streamed(response))

        assert events[0][1]["id"] == header
        assert events[-1] == ("done", events[-1][1])
        assert events[-1][1]["id"] == header

    def test_every_other_response_has_a_fresh_id_and_a_refused_submit_writes_no_row(self):
        default_routes_ensure()
        api = token_client(UserFactory())

        ids = [
            api.get("/api/v1/routes/")["X-Request-ID"],
            api.get("/api/v1/routes/")["X-Request-ID"],
            api.post(SUBMIT, {"text": ""}, format="json")["X-Request-ID"],
            Client().get("/no-such-page/")["X-Request-ID"],
        ]

        assert len({uuid.UUID(i) for i in ids}) == 4
        assert not RequestLog.objects.exists()

    def test_an_incoming_request_id_is_not_taken(self):
        sent = str(uuid.uuid4())

        response = Client().get("/api/v1/health/", headers={"X-Request-ID": sent})

        assert uuid.UUID(response["X-Request-ID"]) != uuid.UUID(sent)

    def test_the_admin_finds_a_request_by_its_id(self, admin_client, openai_upstream):
        default_routes_ensure()
        api = token_client(UserFactory())
        ids = [
            api.post(SUBMIT, {"text": TEXT, "route": "tech"}, format="json")["X-Request-ID"]
            for _ in range(2)
        ]
        changelist = "/admin/requestlogs/requestlog/"

        found = admin_client.get(changelist, {"q": ids[1]})
        not_an_id = admin_client.get(changelist, {"q": "bay"})
        detail = admin_client.get(f"{changelist}{ids[1]}/change/")

        assert [str(log.pk) for log in found.context["cl"].result_list] == [ids[1]]
        assert not_an_id.context["cl"].result_count == 2  # the text search as before
        assert ids[1] in detail.content.decode()


# --- The JSON log line ------------------------------------------------------------------------


class TestRequestLogLine:
    def test_a_submit_logs_one_line_with_its_route_timings_and_no_content(
        self, request_lines, openai_upstream
    ):
        default_routes_ensure()
        user = UserFactory()
        api = token_client(user)

        response = api.post(SUBMIT, {"text": TEXT, "route": "tech"}, format="json")

        [record] = [
            r for r in request_lines() if getattr(r, "request_id", None) == response["X-Request-ID"]
        ]
        line = json_line(record)
        row = RequestLog.objects.get()
        assert line["level"] == "INFO"
        assert line["logger"] == "clubos.requests"
        assert {k: line[k] for k in ("method", "path", "status", "user_id", "client")} == {
            "method": "POST",
            "path": SUBMIT,
            "status": 201,
            "user_id": user.pk,
            "client": "127.0.0.1",
        }
        assert line["request_id"] == str(row.pk)
        assert (line["route"], line["routing_source"], line["request_status"]) == (
            "tech",
            "manual",
            "ok",
        )
        assert line["timings_ms"] == {
            "routing": row.routing_ms,
            "first_text": row.ttft_ms,
            "assistant": row.assistant_ms,
            "total": row.total_ms,
        }
        assert line["duration_ms"] >= row.total_ms
        assert "time" in line
        written = json.dumps(line)
        assert "TrackMan" not in written and row.answer[:20] not in written
        assert api._credentials["HTTP_AUTHORIZATION"].split()[1] not in written

    def test_a_streamed_submit_logs_its_final_status_once_the_stream_ends(
        self, request_lines, openai_upstream
    ):
        default_routes_ensure()
        response = token_client(UserFactory()).post(
            SUBMIT, {"text": TEXT, "route": "tech"}, format="json", headers=SSE
        )
        request_id = response["X-Request-ID"]
        assert not [r for r in request_lines() if getattr(r, "request_id", None) == request_id]

        streamed(response)

        [record] = [r for r in request_lines() if getattr(r, "request_id", None) == request_id]
        line = json_line(record)
        assert (line["status"], line["request_status"], line["route"]) == (201, "ok", "tech")
        assert line["timings_ms"]["total"] == RequestLog.objects.get().total_ms

    def test_any_other_request_logs_a_line_without_submit_fields(self, request_lines):
        response = Client().get("/api/v1/health/", REMOTE_ADDR="192.0.2.7")

        [record] = [r for r in request_lines() if r.name == "clubos.requests"]
        line = json_line(record)
        assert line["request_id"] == response["X-Request-ID"]
        assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/health/", 200)
        assert (line["user_id"], line["client"]) == (None, "192.0.2.7")
        assert "route" not in line and "timings_ms" not in line


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("accept", "status"),
    [
        # Gone while the view waited on the model: no response ever existed.
        pytest.param("application/json", 499, id="json"),
        # Gone after the first event: the stream's response is closed early.
        pytest.param("text/event-stream", 201, id="stream"),
    ],
)
def test_a_client_gone_mid_answer_still_gets_one_line_with_its_row_abandoned(
    request_lines, openai_upstream, monkeypatch, accept, status
):
    import requestlogs.pipeline as pipeline
    from clubos.asgi import application

    default_routes_ensure()
    openai_upstream.configure(ttft_s=0.5, latency_s=1.0)  # the answer takes its time
    gone = asyncio.Event()
    start = pipeline.request_start

    async def start_then_leave(**kwargs):
        run = await start(**kwargs)
        gone.set()  # the client leaves as soon as its row is committed
        return run

    if accept == "application/json":  # the JSON answer's start (the stream's is the view's)
        monkeypatch.setattr(pipeline, "request_start", start_then_leave)
    body = json.dumps({"text": TEXT, "route": "tech"}).encode()
    scope = post_scope(
        SUBMIT,
        body,
        [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"accept", accept.encode()),
            (b"authorization", token_header(UserFactory()).encode()),
        ],
    )
    headers: dict[bytes, bytes] = {}

    async def serve() -> None:
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def receive() -> dict:
            for message in messages:
                return message
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers.update(message["headers"])
            elif message.get("body"):
                gone.set()  # the first event reached the client, which now leaves

        await application(scope, receive, send)

    asyncio.run(serve())

    row = RequestLog.objects.get()
    assert row.status == "abandoned"
    [record] = request_lines()
    line = json_line(record)
    assert (line["request_id"], line["status"]) == (str(row.pk), status)
    assert (line["request_status"], line["route"]) == ("abandoned", "tech")
    if status == 201:
        assert headers[b"X-Request-ID"] == str(row.pk).encode()
