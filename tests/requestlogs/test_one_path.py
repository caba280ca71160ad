"""One way through: every submit, well-formed or hostile, reaches the same code over a real
socket, gets the framework's one answer, and no model call ever happens without its row.

Each case is sent as raw bytes to the ASGI application on a real server (uvicorn, as
``make run``), once for a worker that has never seen the token and once after it has (the
old design answered those two differently). For every case: the status and what the body
says, then the invariant: a refused request leaves no row and makes no model call; an
accepted one leaves exactly one row, committed before its one model call went out.
"""

import codecs
import dataclasses
import json
import socket
import urllib.parse
from dataclasses import dataclass, field

import pytest
from django.db import connection

from requestlogs.models import RequestLog, RequestStatus
from routing.models import Route
from routing.services import route_update
from tests.requestlogs.api_factories import token_header

URL = "/api/v1/requests/"


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    accept: str | None = "application/json"
    host: str | None = None  # None: the server's own
    chunked: bool = False
    token: str = "good"  # good, none or wrong
    says: str = ""  # a piece of the body to expect
    extra_headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def json_body(text: str = "TrackMan frozen in bay 3", **more: object) -> bytes:
    return json.dumps({"text": text, "route": "tech", **more}).encode()


CASES = [
    # Accepted: JSON or events, the text as sent.
    Case("json", 201, json_body(), says='"status":"ok"'),
    Case("events", 201, json_body(), accept="text/event-stream", says="event: done"),
    Case("any media type", 201, json_body(), accept="*/*", says='"status":"ok"'),
    Case("charset utf-8", 201, json_body("café au lait"), "application/json; charset=utf-8"),
    Case(
        "charset latin-1 means latin-1",
        201,
        json.dumps({"text": "café au lait", "route": "tech"}, ensure_ascii=False).encode("latin-1"),
        "application/json; charset=latin-1",
        says="café au lait",
    ),
    Case("charset ascii, ascii text", 201, json_body(), "application/json; charset=ascii"),
    # Refused by Django, before any view: a Host the site does not serve.
    Case("host not allowed", 400, json_body(), host="evil.example"),
    # Refused by DRF's parser: bodies that are not JSON in the charset they claim.
    Case(
        "utf-8 byte-order mark",
        400,
        codecs.BOM_UTF8 + json_body(),
        says="JSON parse error",
    ),
    Case("utf-16", 400, json.dumps({"text": "TrackMan"}).encode("utf-16"), says="JSON parse error"),
    Case("utf-32", 400, json.dumps({"text": "TrackMan"}).encode("utf-32"), says="JSON parse error"),
    Case(
        "charset ascii, text that is not",
        400,
        json.dumps({"text": "café", "route": "tech"}, ensure_ascii=False).encode(),
        "application/json; charset=ascii",
        says="JSON parse error",
    ),
    Case("charset utf-7", 400, json_body("a+b-c"), "application/json; charset=utf-7"),
    Case("malformed json", 400, b'{"text": "TrackMan', says="JSON parse error"),
    Case("nested too deeply", 400, b"[" * 5000 + b"]" * 5000, says="nested too deeply"),
    Case("a list, not an object", 400, b'["TrackMan"]', says="non_field_errors"),
    Case("NaN is not JSON", 400, b'{"text": NaN}', says="JSON parse error"),
    # A body without a length (chunked) is measured and read like any other.
    Case("chunked body", 201, json_body(), chunked=True, says='"status":"ok"'),
    # Refused before any view: a body over the API's limit (API_MAX_BODY_BYTES), with or
    # without a length, for JSON or events.
    Case("body too large", 413, json_body("x" * 70_000), says="too large"),
    Case("chunked body too large", 413, json_body("x" * 70_000), chunked=True, says="too large"),
    Case(
        "events, body too large",
        413,
        json_body("x" * 70_000),
        accept="text/event-stream",
        chunked=True,
        says="too large",
    ),
    # Refused by DRF: the wrong media type.
    Case("form body", 415, b"text=TrackMan", "application/x-www-form-urlencoded"),
    Case("empty accept", 406, json_body(), accept=""),
    Case("accept only xml", 406, json_body(), accept="application/xml"),
    # Refused by validation: a message per field.
    Case("nul in the text", 400, json_body("TrackMan\x00frozen"), says="Null characters"),
    Case("empty text", 400, json_body("   "), says="the text is empty"),
    Case("text too long", 400, json_body("x" * 4001), says="under 4000"),
    Case("text not text", 400, b'{"text": 42}', says="as text"),
    Case("unknown route", 400, json_body(route="golf"), says="Unknown or disabled route"),
    Case("disabled route", 400, json_body(route="brand"), says="Unknown or disabled route"),
    Case("location too long", 400, json_body(location="x" * 101), says="location"),
    Case("nul in the location", 400, json_body(location="bay\x003"), says="Null characters"),
    # Refused by authentication.
    Case("no token", 401, json_body(), token="none"),
    Case("wrong token", 401, json_body(), token="wrong", says="Invalid token"),
]


def send(url: str, case: Case, authorization: str) -> tuple[int, bytes]:
    """``case`` as raw HTTP/1.1 on a new connection; the status and the whole body."""
    address = urllib.parse.urlsplit(url)
    head = [
        f"POST {URL} HTTP/1.1",
        f"Host: {case.host or address.netloc}",
        f"Content-Type: {case.content_type}",
        "Connection: close",
    ]
    if case.accept is not None:
        head.append(f"Accept: {case.accept}")
    if case.token == "good":
        head.append(f"Authorization: {authorization}")
    elif case.token == "wrong":
        head.append("Authorization: Token 0123456789abcdef0123456789abcdef01234567")
    head += [f"{name}: {value}" for name, value in case.extra_headers]
    if case.chunked:
        head.append("Transfer-Encoding: chunked")
        payload = f"{len(case.body):x}\r\n".encode() + case.body + b"\r\n0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(case.body)}")
        payload = case.body
    with socket.create_connection((address.hostname, address.port), timeout=20) as sock:
        sock.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + payload)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    status_line, _, rest = raw.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        body = _unchunked(body)
    return int(status_line.split()[1]), body


def _unchunked(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("token_known", [False, True], ids=["token-new", "token-known"])
def test_every_case_gets_one_answer_and_no_model_call_without_its_row(
    asgi_live_server, routes, user, openai_upstream, token_known
):
    route_update(route=Route.objects.get(slug="brand"), enabled=False)
    authorization = token_header(user)
    if token_known:
        assert send(asgi_live_server.url, CASES[0], authorization)[0] == 201
    answers: dict[str, tuple[int, bytes]] = {}
    for case in CASES:
        rows, calls = RequestLog.objects.count(), len(openai_upstream.calls)
        status, body = send(asgi_live_server.url, case, authorization)
        answers[case.name] = status, body
        assert status == case.status, (case.name, body[:300])
        assert case.says.encode() in body, (case.name, body[:300])
        new_rows = RequestLog.objects.count() - rows
        new_calls = openai_upstream.calls[calls:]
        if status == 201:
            assert new_rows == 1 and len(new_calls) == 1, case.name
            row = RequestLog.objects.order_by("-created_at").first()
            assert row is not None and row.status == RequestStatus.OK, case.name
        else:
            assert new_rows == 0 and new_calls == [], case.name
    latin = json.loads(answers["charset latin-1 means latin-1"][1])
    assert RequestLog.objects.get(pk=latin["id"]).text == "café au lait"


@pytest.mark.django_db(transaction=True)
def test_a_route_disabled_by_an_admin_is_refused_at_once(asgi_live_server, routes, user):
    authorization = token_header(user)
    accepted = Case("booking", 201, json_body(route="booking"))
    assert send(asgi_live_server.url, accepted, authorization)[0] == 201

    route_update(route=Route.objects.get(slug="booking"), enabled=False)

    status, body = send(asgi_live_server.url, accepted, authorization)
    assert status == 400 and b"Unknown or disabled route" in body


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite stores NUL characters")
@pytest.mark.django_db(transaction=True)
def test_a_row_the_database_refuses_is_a_clear_error_and_no_model_call(
    asgi_live_server, routes, user, openai_upstream, monkeypatch
):
    # Past validation, the row's INSERT itself fails: nothing may be called.
    import requestlogs.validation as validation

    validate = validation.request_validate

    def sneak_a_nul(**kwargs):
        return dataclasses.replace(validate(**kwargs), location="bay\x003")

    monkeypatch.setattr("requestlogs.apis.request_validate", sneak_a_nul)
    status, body = send(asgi_live_server.url, Case("json", 201, json_body()), token_header(user))

    # A value the database refuses is the client's: a 400 with a message (clubos.api).
    assert status == 400 and b"cannot be stored" in body
    assert not RequestLog.objects.exists() and openai_upstream.calls == []


@pytest.mark.django_db(transaction=True)
def test_the_body_is_parsed_off_the_event_loop(asgi_live_server, routes, user, monkeypatch):
    # A large body takes the parser a while: never on the loop every stream shares.
    import threading

    from config.parsers import JSONParser

    threads: list[str] = []
    parse = JSONParser.parse

    def recorded(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return parse(self, *args, **kwargs)

    monkeypatch.setattr(JSONParser, "parse", recorded)
    assert send(asgi_live_server.url, CASES[0], token_header(user))[0] == 201
    assert threads and "asgi-live-server" not in threads


@pytest.mark.django_db
def test_only_a_submit_answers_in_events(api_client, routes):
    listed = api_client.get(URL, headers={"Accept": "text/event-stream"})
    assert listed.status_code == 406
    assert api_client.get(URL).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("failure", ["django", "psycopg"])
def test_a_database_out_of_reach_is_a_503_and_no_model_call(
    api_client, routes, openai_upstream, monkeypatch, failure
):
    import psycopg
    from django.db import OperationalError

    import requestlogs.pipeline as pipeline

    async def unreachable(log):
        if failure == "django":
            raise OperationalError("connection refused")
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(pipeline, "request_log_insert", unreachable)
    response = api_client.post(URL, {"text": "TrackMan frozen", "route": "tech"}, format="json")

    assert response.status_code == 503
    assert "unavailable" in response.json()["detail"] and response["Retry-After"] == "5"
    assert openai_upstream.calls == []
