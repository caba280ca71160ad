"""Secure by default in production: check --deploy, HTTPS, cookies, the Content Security
Policy on every page, and request bodies over the limit answered with a 413, never a 500.

The suite itself runs over plain HTTP with the redirect and the secure cookies switched off
(pyproject's pytest env); the production defaults are checked here in processes started with
a production-like environment instead.
"""

import asyncio
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path

import pytest
from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.test import Client, RequestFactory, override_settings
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from clubos import middleware
from clubos.checks import security_through_subclasses
from tests.requestlogs.api_factories import token_client
from tests.requestlogs.factories import PASSWORD, RequestLogFactory, UserFactory

ROOT = Path(settings.BASE_DIR)
HOST = "clubos.example.com"
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; "
    "object-src 'none'"
)


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """What a production process is given: no DEBUG, a strong secret, its host, and none of
    the test suite's switches."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "PYTEST_")) and name not in ("DATABASE_URL",)
    }
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS=HOST,
        DJANGO_SETTINGS_MODULE="clubos.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
    )
    env.update(overrides)
    return env


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- check --deploy -----------------------------------------------------------------------


def test_check_deploy_has_no_issue_with_the_production_defaults(tmp_path):
    done = check_deploy(production_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout, done.stdout


def test_each_plain_http_switch_is_reported_by_check_deploy(tmp_path):
    """The switches really switch, and the checks Django skips for a subclassed middleware
    are run and reported (clubos/checks.py), not silenced."""
    done = check_deploy(
        production_env(
            tmp_path,
            DJANGO_SECURE_SSL_REDIRECT="0",
            DJANGO_SECURE_HSTS_SECONDS="0",
            DJANGO_SECURE_COOKIES="0",
        )
    )
    assert done.returncode != 0
    for check_id in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert f"clubos.{check_id}" in done.stderr + done.stdout, check_id


def test_a_missing_security_middleware_is_still_reported():
    without = [path for path in settings.MIDDLEWARE if not path.endswith(".SecurityMiddleware")]
    with override_settings(MIDDLEWARE=without):
        ids = {message.id for message in security_through_subclasses(None)}
    assert "clubos.security.W001" in ids
    assert not any(
        check_id.startswith("clubos.security.W00") for check_id in ids - {"clubos.security.W001"}
    )


# --- The defaults, over real HTTP -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def production_server(tmp_path) -> Iterator[int]:
    """uvicorn serving ClubOS with the production defaults, on loopback."""
    port = _free_port()
    argv = [sys.executable, "-m", "uvicorn", "clubos.asgi:application", "--port", str(port)]
    process = subprocess.Popen(  # noqa: S603 - our own argv
        [*argv, "--lifespan", "off", "--log-level", "warning", "--no-access-log"],
        cwd=ROOT,
        env=production_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(process.communicate()[1].decode()[-2000:]) from None
            time.sleep(0.1)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def get(port: int, path: str, **headers: str):
    connection = HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={"Host": HOST, **headers})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_production_defaults_are_on(production_server):
    # Plain HTTP is sent to HTTPS.
    response = get(production_server, "/accounts/login/?next=/")
    assert response.status == 301
    assert response.getheader("Location") == f"https://{HOST}/accounts/login/?next=/"
    assert response.getheader("Strict-Transport-Security") is None

    # Through the TLS-terminating proxy: HSTS and the policy. (A page with static files
    # needs collectstatic first in production: the health check needs none.)
    response = get(production_server, "/api/v1/health/", **{"X-Forwarded-Proto": "https"})
    assert response.status in (200, 503)
    assert (
        response.getheader("Strict-Transport-Security")
        == "max-age=31536000; includeSubDomains; preload"
    )
    assert response.getheader("Content-Security-Policy") == POLICY

    # A load balancer's plain-HTTP health check is answered, not redirected.
    response = get(production_server, "/api/v1/health/")
    assert response.status in (200, 503)
    assert response.getheader("Location") is None


def test_the_session_and_csrf_cookies_are_secure_by_default(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT)",
        ],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split() == ["True", "True", "True"], done.stderr


@pytest.mark.django_db
@override_settings(SESSION_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True)
def test_secure_cookies_are_marked_secure_on_sign_in():
    user = UserFactory()
    client = Client(enforce_csrf_checks=False)
    page = client.get("/accounts/login/", secure=True)
    assert page.cookies[settings.CSRF_COOKIE_NAME]["secure"] is True
    response = client.post(
        "/accounts/login/", {"username": user.username, "password": PASSWORD}, secure=True
    )
    assert response.status_code == 302
    assert response.cookies[settings.SESSION_COOKIE_NAME]["secure"] is True


# --- Content Security Policy ------------------------------------------------------------------


@pytest.mark.django_db
def test_every_page_has_the_policy_and_a_nonce_only_when_it_uses_one():
    admin = UserFactory(superuser=True)
    client = Client()
    client.force_login(admin)
    RequestLogFactory()

    console = client.get("/")
    assert console.status_code == 200
    assert console["Content-Security-Policy"] == POLICY

    # The admin's change list has an inline <style>, marked with the response's nonce.
    changelist = client.get("/admin/requestlogs/requestlog/")
    header = changelist["Content-Security-Policy"]
    nonce = re.search(r"script-src 'self' 'nonce-([\w-]+)'", header)
    assert nonce is not None, header
    assert f'nonce="{nonce[1]}"' in changelist.content.decode()

    for path in ("/api/v1/docs/", "/api/v1/health/", "/accounts/login/", "/api/v1/requests/"):
        assert client.get(path)["Content-Security-Policy"] == POLICY, path

    # ReDoc's page alone has wider styles; its scripts are held to 'self' all the same.
    redoc = client.get("/api/v1/redoc/")["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in redoc
    assert "script-src 'self';" in redoc


TEMPLATE_DIRS = [ROOT / "templates", *ROOT.glob("*/templates")]
INLINE = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I),
    "inline style element": re.compile(r"<style\b", re.I),
    "style attribute": re.compile(r"\sstyle=", re.I),
    "event handler attribute": re.compile(r"\son[a-z]+=", re.I),
}


def test_no_inline_script_or_style_in_our_templates():
    found = [
        f"{path.relative_to(ROOT)}: {kind}"
        for directory in TEMPLATE_DIRS
        for path in directory.rglob("*.html")
        for kind, pattern in INLINE.items()
        if pattern.search(path.read_text())
    ]
    assert TEMPLATE_DIRS and found == []


def test_csp_and_body_limit_middleware_take_no_thread_under_asgi():
    """On the event loop, as the rest of the chain (clubos/middleware.py): no thread hop."""

    class CountingExecutor(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args, **kwargs):
            CountingExecutor.submitted += 1
            return super().submit(*args, **kwargs)

    async def view(request):
        from django.http import HttpResponse

        return HttpResponse("ok")

    chain = middleware.ContentSecurityPolicyMiddleware(middleware.RequestBodyLimitMiddleware(view))
    request = RequestFactory().post("/api/v1/requests/", b"{}", content_type="application/json")

    async def serve():
        with CountingExecutor(max_workers=1) as executor:
            async with ThreadSensitiveContext(executor=executor):
                return await chain(request)

    response = asyncio.run(serve())
    assert response["Content-Security-Policy"] == POLICY
    assert CountingExecutor.submitted == 0


# --- Request body size --------------------------------------------------------------------------


def deep_json(levels: int = 5000) -> bytes:
    return b"[" * levels + b"]" * levels


def too_large_json() -> bytes:
    return json.dumps({"text": "x" * (settings.API_MAX_BODY_BYTES + 1)}).encode()


def api_write_paths(request_id: str) -> list[tuple[str, str, bool]]:
    """Every endpoint of the OpenAPI schema a body can be sent to: (method, path, whether
    the schema says it takes one)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (method, re.sub(r"\{[^}]+\}", request_id, path), "requestBody" in operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if method in ("post", "put", "patch")
    ]


@pytest.fixture
def writer():
    user = UserFactory()
    log = RequestLogFactory(user=user)
    return user, str(log.pk)


@pytest.mark.django_db
def test_every_api_endpoint_refuses_a_body_over_the_limit_with_a_413(writer):
    user, request_id = writer
    client = token_client(user)
    paths = api_write_paths(request_id)
    assert ("post", "/api/v1/requests/", True) in paths and len(paths) >= 4
    for method, path, _ in paths:
        for accept in ("application/json", "text/event-stream"):
            response = getattr(client, method)(
                path, too_large_json(), content_type="application/json", HTTP_ACCEPT=accept
            )
            assert response.status_code == 413, (path, accept, response.content[:200])
            assert "too large" in response.json()["detail"], path
    # Before authentication: nobody's body is read.
    response = APIClient().post("/api/v1/requests/", too_large_json(), "json")
    assert response.status_code == 413


@pytest.mark.django_db
def test_every_api_endpoint_answers_deep_json_with_a_400(writer):
    """Every endpoint that reads a body says it is nested too deeply; one that takes no body
    (revoking a token) does not read it at all."""
    user, request_id = writer
    for method, path, takes_body in api_write_paths(request_id):
        # A new token each time: an endpoint that revokes tokens may have revoked the last.
        client = token_client(user)
        response = getattr(client, method)(path, deep_json(), content_type="application/json")
        if takes_body:
            assert response.status_code == 400, (path, response.content[:200])
            assert "nested too deeply" in response.json()["detail"], path
        else:
            assert response.status_code < 500, (path, response.content[:200])


@pytest.mark.django_db
def test_the_largest_valid_submit_fits_under_the_limit(writer, openai_upstream):
    """4,000 characters, each one \\u-escaped twice over (a surrogate pair): still accepted."""
    client = token_client(writer[0])
    body = json.dumps({"text": "\N{GRINNING FACE}" * 4000, "route": "tech", "location": "x" * 100})
    assert len(body) < settings.API_MAX_BODY_BYTES
    response = client.post("/api/v1/requests/", body, content_type="application/json")
    assert response.status_code == 201, response.content[:300]


@pytest.mark.django_db
def test_a_form_over_the_limit_gets_a_413_page_not_a_500():
    big = urllib.parse.urlencode(
        {"username": "x", "password": "y" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE}
    )
    response = Client().post(
        "/accounts/login/", big, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413
    assert "too large" in response.content.decode()
    assert response["Content-Security-Policy"] == POLICY

    admin = UserFactory(superuser=True)
    client = Client()
    client.force_login(admin)
    response = client.post(
        "/admin/routing/route/add/", big, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413


@pytest.mark.django_db
def test_a_form_larger_than_an_api_body_is_still_a_form():
    """The API's limit is the API's: the sign-in form is held to Django's larger one."""
    user = UserFactory()
    body = {"username": user.username, "password": PASSWORD, "padding": "x" * 100_000}
    response = Client().post("/accounts/login/", body)
    assert response.status_code == 302


@pytest.mark.django_db
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000, API_MAX_BODY_BYTES=100_000)
def test_djangos_own_limit_met_by_a_drf_parser_is_a_413():
    """A multipart body is held to DATA_UPLOAD_MAX_MEMORY_SIZE by Django's parser, inside DRF:
    clubos.api's handler answers 413, not 500."""
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "x" * 5000, "password": "y"}, format="multipart"
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is too large for this endpoint."}
