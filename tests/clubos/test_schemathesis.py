"""Schemathesis against the API's own OpenAPI schema, over a real server: no input is a 5xx.

The schema is read from the running server (``/api/v1/schema/``, drf-spectacular), and every
operation in it goes through schemathesis's phases (the schema's examples, coverage: boundary
and invalid values, fuzzing, and stateful sequences), sent over HTTP to the ASGI application
production serves (uvicorn on loopback), with a staff user's token from the token endpoint
and the model answered by the project's fake upstream.

It runs schemathesis's own engine (what ``schemathesis run`` drives): its pytest loader
(``schemathesis.pytest.from_fixture``) does not work under pytest 9.2. Every response is
looked at here, so the run reports each 5xx with the request that caused it, and how many
cases it sent in all (at least ``MIN_CASES``; ``MAX_EXAMPLES`` bounds each operation's
generated examples, and the coverage phase adds its own).
"""

from collections import Counter

import httpx2
import pytest
import schemathesis
from django.db import connection
from schemathesis.engine import events, from_schema

from accounts.services import api_token_create
from tests.requestlogs.api_factories import default_routes_ensure
from tests.requestlogs.factories import PASSWORD, UserFactory

MAX_EXAMPLES = 60
MIN_CASES = 1000
REVOKE = r"/auth/token/revoke"


def staff_token(base_url: str) -> str:
    """A staff user's API token, from the token endpoint as a client gets one."""
    user = UserFactory(is_staff=True)
    answer = httpx2.post(
        f"{base_url}/api/v1/auth/token/",
        json={"username": user.username, "password": PASSWORD},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def token_auth(key: str) -> type:
    """A schemathesis auth provider sending one API token."""

    class TokenAuth:
        def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
            return key

        def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Token {data}"}

    return TokenAuth


def fresh_token_auth() -> type:
    """A schemathesis auth provider sending a new token of another user with every case."""
    user = UserFactory()

    class FreshTokenAuth(token_auth("")):  # type: ignore[misc]
        def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
            try:
                return api_token_create(user=user)[1]
            finally:
                connection.close()  # opened in the engine's thread

    return FreshTokenAuth


@pytest.fixture
def no_rate_limits(settings) -> None:
    """Every case reaches the views' own checks: a throttle answers before validation, and
    this run sends far more than a person would (the throttles have tests of their own)."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(
            settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}), None
        ),
    }


@pytest.mark.django_db(transaction=True)
def test_no_input_to_any_operation_is_a_server_error(
    asgi_live_server, openai_upstream, no_rate_limits
):
    default_routes_ensure()
    base_url = asgi_live_server.url
    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/schema/", timeout=10)
    schema.config.update(base_url=base_url, request_timeout=30, workers=1)
    staff = token_auth(staff_token(base_url))
    # Revoking would end the run's own token: those operations get a token of their own each.
    schema.auth(refresh_interval=None).skip_for(path_regex=REVOKE)(staff)
    schema.auth(refresh_interval=None).apply_to(path_regex=REVOKE)(fresh_token_auth())
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    schema.config.checks.update(included_check_names=["not_a_server_error"])

    cases: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    fatal: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            recorder = event.recorder
            for case_id, node in recorder.cases.items():
                interaction = recorder.interactions.get(case_id)
                if interaction is None or interaction.response is None:
                    continue
                cases[node.value.operation.label] += 1
                status = interaction.response.status_code
                statuses[status] += 1
                if status >= 500:
                    request = interaction.request
                    server_errors.append(
                        f"{request.method} {request.uri} -> {status}\n"
                        f"body: {(request.body or b'')[:500]!r}\n"
                        f"{interaction.response.content[:1500]!r}"
                    )
        elif isinstance(event, events.FatalError | events.NonFatalError):
            fatal.append(repr(event))

    total = sum(cases.values())
    print(f"\nschemathesis: {total} cases; by operation {dict(cases)}; by status {dict(statuses)}")
    assert not fatal, fatal
    assert not server_errors, "\n\n".join(server_errors)
    assert total >= MIN_CASES, f"only {total} cases: {dict(cases)}"
