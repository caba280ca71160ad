"""A client that goes away at the worst moment: right after its row was committed, while
the response makes its way out through the middleware. Driven through the ASGI
application itself, as the server drives it, with the disconnect timed exactly."""

import asyncio
import json

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.cached_db import SessionStore
from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

import requestlogs.apis as apis
from devtools.asgi import post_scope
from requestlogs.models import RequestLog, RequestStatus
from tests.requestlogs.api_factories import token_header


def session_headers(user) -> list[tuple[bytes, bytes]]:
    """The console's: a signed-in session's cookie, its CSRF token, the web channel."""
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    secret = _get_new_csrf_string()
    return [
        (b"cookie", f"sessionid={session.session_key}; csrftoken={secret}".encode()),
        (b"x-csrftoken", _mask_cipher_secret(secret).encode()),
        (b"x-clubos-channel", b"web"),
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("by", ["session", "token"])
def test_a_client_gone_as_its_row_is_committed_leaves_it_abandoned(
    routes, user, monkeypatch, openai_upstream, by
):
    from clubos.asgi import application

    openai_upstream.configure(ttft_s=0.5, latency_s=1.0)  # the answer takes its time
    committed = asyncio.Event()
    start = apis.request_start

    async def start_then_tell(**kwargs):
        run = await start(**kwargs)
        committed.set()
        return run

    monkeypatch.setattr(apis, "request_start", start_then_tell)
    headers = session_headers(user) if by == "session" else []
    if by == "token":
        headers.append((b"authorization", token_header(user).encode()))
    body = json.dumps({"text": "TrackMan frozen in bay 3", "route": "tech"}).encode()
    scope = post_scope(
        "/api/v1/requests/",
        body,
        [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"accept", b"text/event-stream"),
            *headers,
        ],
    )

    async def serve() -> None:
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def receive() -> dict:
            for message in messages:
                return message
            await committed.wait()  # the client goes away as soon as its row is committed
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            return None

        await application(scope, receive, send)

    asyncio.run(serve())
    [row] = RequestLog.objects.all()
    assert row.status == RequestStatus.ABANDONED
    # Every call the model saw is counted on the row, however the request ended.
    assert len(openai_upstream.calls) <= row.upstream_calls
    assert row.channel == ("web" if by == "session" else "api")
