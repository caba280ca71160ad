"""The fake OpenAI upstream, driven through the real SDK over real HTTP."""

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from devtools.fake_openai import (
    Behaviour,
    FakeOpenAI,
    answer_for,
    guess_route,
    split_deltas,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RESPONSES_EVENT_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


class Route(pydantic.BaseModel):
    route: str
    confidence: float


def client_for(server: FakeOpenAI, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0, timeout=timeout)


def async_client_for(server: FakeOpenAI, timeout: float = 5.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="test", base_url=server.base_url, max_retries=0, timeout=timeout
    )


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> openai.OpenAI:
    return client_for(fake_openai)


@pytest.fixture
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Any:
    """Fails the test if uvicorn logged an error (e.g. about a half-finished response)."""
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    yield
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


def chat_messages(text: str) -> list[Any]:
    return [
        {"role": "system", "content": "You are the ClubOS desk."},
        {"role": "user", "content": text},
    ]


# --- content helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "route"),
    [
        ("There is smoke coming from bay 2", "emergency"),
        ("A member got hurt by a ricochet", "emergency"),
        ("Water leak under the sink", "emergency"),
        ("I need a refund for my booking", "booking"),
        ("The door code does not work, I'm locked out", "booking"),
        ("Trackman is frozen on bay 4", "tech"),
        ("The projector shows nothing", "tech"),
        ("What are your opening hours?", "brand"),
        ("", "brand"),
    ],
)
def test_guess_route(text: str, route: str) -> None:
    assert guess_route(text) == route


def test_answer_is_deterministic_plausible_and_quotes_the_input() -> None:
    answer = answer_for("Trackman screen keeps freezing during rounds")
    assert answer == answer_for("Trackman screen keeps freezing during rounds")
    assert "Trackman screen keeps freezing during rounds" in answer
    assert 40 <= len(answer.split()) <= 80
    assert answer.count(". ") >= 2
    assert answer_for("Something else entirely") != answer


def test_split_deltas_rejoins_exactly() -> None:
    text = 'Hello  there,\n"friend". {"route": "tech"} '
    pieces = split_deltas(text)
    assert "".join(pieces) == text
    assert len(pieces) == 6


def test_behaviour_rejects_unknown_failure(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(ValueError, match="fail must be"):
        fake_openai.configure(fail="418")
    with pytest.raises(TypeError, match="unknown behaviour field"):
        fake_openai.configure(nope=1)
    assert fake_openai.behaviour == Behaviour()


# --- Responses API ---------------------------------------------------------------------------


def test_responses_non_stream(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    resp = client.responses.create(
        model="gpt-4o-mini", instructions="Be brief.", input="Trackman in bay 3 is frozen"
    )
    assert resp.output_text == answer_for("Trackman in bay 3 is frozen")
    assert resp.status == "completed"
    assert resp.model == "gpt-4o-mini"
    assert resp.output[0].type == "message"
    assert resp.usage is not None
    assert resp.usage.output_tokens > 10
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    # Strict validation against the SDK's model, not just its lenient construction.
    Response.model_validate(resp.model_dump())

    [call] = fake_openai.calls
    assert call.path == "/v1/responses"
    assert call.model == "gpt-4o-mini"
    assert call.stream is False
    assert call.status == 200
    assert call.body["instructions"] == "Be brief."
    assert call.failure is None


def test_responses_stream_event_sequence(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    text = "Can I book bay 5 for tonight?"
    events = list(
        client.responses.create(
            model="gpt-4o",
            input=[{"role": "user", "content": [{"type": "input_text", "text": text}]}],
            stream=True,
        )
    )
    types = [e.type for e in events]
    collapsed = [t for i, t in enumerate(types) if i == 0 or t != types[i - 1]]
    assert collapsed == RESPONSES_EVENT_ORDER
    assert types.count("response.output_text.delta") > 20
    assert [e.sequence_number for e in events] == list(range(len(events)))

    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
    for event in events:
        adapter.validate_python(event.model_dump())

    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = next(e for e in events if e.type == "response.output_text.done")
    completed = events[-1]
    assert completed.type == "response.completed"
    assert deltas == done.text == completed.response.output_text == answer_for(text)
    usage = completed.response.usage
    assert usage is not None
    assert usage.output_tokens == types.count("response.output_text.delta")
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert fake_openai.calls[0].stream is True


def test_responses_stream_helper_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model="gpt-4o-mini", input="Hello from the front desk") as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(texts) == answer_for("Hello from the front desk")


def test_fixed_answer_text(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    fake_openai.configure(answer_text="Fixed answer for this test.")
    resp = client.responses.create(model="m", input="anything")
    assert resp.output_text == "Fixed answer for this test."
    chat = client.chat.completions.create(model="m", messages=chat_messages("anything"))
    assert chat.choices[0].message.content == "Fixed answer for this test."


# --- Chat Completions --------------------------------------------------------------------------


def test_chat_non_stream(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(
        model="gpt-4o", messages=chat_messages("Is the bar open late on Fridays?")
    )
    assert chat.object == "chat.completion"
    assert chat.choices[0].finish_reason == "stop"
    assert chat.choices[0].message.content == answer_for("Is the bar open late on Fridays?")
    assert chat.usage is not None
    assert chat.usage.completion_tokens > 10
    [call] = fake_openai.calls
    assert (call.path, call.model, call.stream, call.status) == (
        "/v1/chat/completions",
        "gpt-4o",
        False,
        200,
    )


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=chat_messages("The wifi keeps dropping"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.model_dump())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer_for("The wifi keeps dropping")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    assert usage_chunks[0] is chunks[-1]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(split_deltas(text))


def test_chat_stream_without_usage_ends_with_done(fake_openai: FakeOpenAI) -> None:
    body = {"model": "m", "messages": chat_messages("hi"), "stream": True}
    with httpx2.Client(timeout=5) as http:
        resp = http.post(
            f"{fake_openai.base_url}/chat/completions",
            json=body,
            headers={"Authorization": "Bearer x"},
        )
    assert resp.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in resp.text.split("\n") if line]
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line[len("data: ") :]) for line in lines[:-1]]
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert all("usage" not in p for p in payloads)


def test_models_list(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids


# --- structured routing answers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "route"),
    [
        ("Smoke alarm going off in bay 1", "emergency"),
        ("Please cancel my reservation", "booking"),
        ("PC in bay 6 won't start", "tech"),
        ("Do you sell gift cards?", "brand"),
    ],
)
def test_json_routing_answers(client: openai.OpenAI, text: str, route: str) -> None:
    schema: Any = {
        "type": "json_schema",
        "name": "route",
        "schema": Route.model_json_schema(),
    }
    resp = client.responses.create(model="m", input=text, text={"format": schema})
    assert json.loads(resp.output_text) == {"route": route, "confidence": 0.9}

    chat = client.chat.completions.create(
        model="m", messages=chat_messages(text), response_format={"type": "json_object"}
    )
    assert json.loads(chat.choices[0].message.content or "") == {
        "route": route,
        "confidence": 0.9,
    }


def test_json_routing_overrides_and_sdk_parse(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.configure(route_answer="tech", route_confidence=0.42)
    parsed = client.responses.parse(model="m", input="There is a fire", text_format=Route)
    assert parsed.output_parsed == Route(route="tech", confidence=0.42)

    chat = client.chat.completions.parse(
        model="m", messages=chat_messages("There is a fire"), response_format=Route
    )
    assert chat.choices[0].message.parsed == Route(route="tech", confidence=0.42)

    streamed = client.responses.create(
        model="m", input="x", text={"format": {"type": "json_object"}}, stream=True
    )
    text = "".join(e.delta for e in streamed if e.type == "response.output_text.delta")
    assert json.loads(text) == {"route": "tech", "confidence": 0.42}


# --- failure modes ------------------------------------------------------------------------------


def call_endpoint(client: openai.OpenAI, endpoint: str, stream: bool) -> str:
    """Make one call and read it to the end; returns the answer text."""
    if endpoint == "responses":
        if stream:
            events = client.responses.create(model="m", input="hello", stream=True)
            return "".join(e.delta for e in events if e.type == "response.output_text.delta")
        return client.responses.create(model="m", input="hello").output_text
    if stream:
        chunks = client.chat.completions.create(
            model="m", messages=chat_messages("hello"), stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return (
        client.chat.completions.create(model="m", messages=chat_messages("hello"))
        .choices[0]
        .message.content
        or ""
    )


ENDPOINT_CASES = [
    pytest.param(endpoint, stream, id=f"{endpoint}-{'stream' if stream else 'plain'}")
    for endpoint in ("responses", "chat")
    for stream in (False, True)
]


@pytest.mark.parametrize(("endpoint", "stream"), ENDPOINT_CASES)
def test_fail_429(fake_openai: FakeOpenAI, client: openai.OpenAI, endpoint: str, stream: bool):
    fake_openai.configure(fail="429")
    with pytest.raises(openai.RateLimitError) as info:
        call_endpoint(client, endpoint, stream)
    assert info.value.status_code == 429
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after"] == "0"
    assert fake_openai.calls[-1].status == 429
    assert fake_openai.calls[-1].failure == "429"


@pytest.mark.parametrize(("endpoint", "stream"), ENDPOINT_CASES)
def test_fail_500(fake_openai: FakeOpenAI, client: openai.OpenAI, endpoint: str, stream: bool):
    fake_openai.configure(fail="500")
    with pytest.raises(openai.InternalServerError) as info:
        call_endpoint(client, endpoint, stream)
    assert info.value.type == "server_error"
    assert fake_openai.calls[-1].status == 500


@pytest.mark.parametrize(("endpoint", "stream"), ENDPOINT_CASES)
def test_fail_hang_times_out(
    fake_openai: FakeOpenAI, endpoint: str, stream: bool, no_server_errors: None
) -> None:
    fake_openai.configure(fail="hang")
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        call_endpoint(client_for(fake_openai, timeout=0.3), endpoint, stream)
    assert time.monotonic() - started < 2
    assert fake_openai.calls[-1].status is None
    assert fake_openai.calls[-1].failure == "hang"


@pytest.mark.parametrize(("endpoint", "stream"), ENDPOINT_CASES)
def test_fail_disconnect(
    fake_openai: FakeOpenAI,
    client: openai.OpenAI,
    endpoint: str,
    stream: bool,
    no_server_errors: None,
) -> None:
    fake_openai.configure(fail="disconnect", disconnect_after=3)
    with pytest.raises(openai.APIConnectionError):
        call_endpoint(client, endpoint, stream)
    call = fake_openai.calls[-1]
    assert call.failure == "disconnect"
    assert call.status == (200 if stream else None)


def test_disconnect_stream_delivers_some_deltas_first(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.configure(fail="disconnect", disconnect_after=3)
    seen: list[str] = []

    def read_stream() -> None:
        for event in client.responses.create(model="m", input="hello", stream=True):
            seen.append(event.type)

    with pytest.raises(openai.APIConnectionError):
        read_stream()
    assert seen.count("response.output_text.delta") == 3
    assert "response.completed" not in seen


def test_fail_times_fails_once_then_succeeds(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.configure(fail="429", fail_times=1)
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="m", input="hello")
    assert client.responses.create(model="m", input="hello").output_text
    assert fake_openai.behaviour.fail_times == 0
    assert [c.status for c in fake_openai.calls] == [429, 200]


def test_sdk_retries_through_a_single_failure(fake_openai: FakeOpenAI) -> None:
    fake_openai.configure(fail="500", fail_times=1)
    retrying = openai.OpenAI(api_key="t", base_url=fake_openai.base_url, max_retries=1)
    assert retrying.responses.create(model="m", input="hello").output_text
    assert [c.status for c in fake_openai.calls] == [500, 200]


def test_only_path_restricts_failures(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    fake_openai.configure(fail="500", only_path="/v1/chat/completions")
    assert client.responses.create(model="m", input="hello").output_text
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=chat_messages("hello"))
    assert client.models.list().data


def test_reset_restores_defaults(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    fake_openai.configure(fail="500", ttft_s=1.0)
    fake_openai.behaviour.answer_text = "set directly"
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="m", input="hello")
    fake_openai.reset()
    assert fake_openai.calls == []
    assert fake_openai.behaviour == Behaviour()


# --- auth and control endpoints -----------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "x y"}])
def test_401_without_bearer(fake_openai: FakeOpenAI, headers: dict[str, str]) -> None:
    resp = httpx2.post(
        f"{fake_openai.base_url}/responses", json={"model": "m", "input": "x"}, headers=headers
    )
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert fake_openai.calls[-1].status == 401


def test_unknown_path_is_404(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="m", input="x")


def test_http_control_endpoints(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    root = fake_openai.root_url
    resp = httpx2.post(f"{root}/_fake/behaviour", json={"answer_text": "via http", "fail": None})
    assert resp.status_code == 200
    assert resp.json()["answer_text"] == "via http"
    assert client.responses.create(model="m", input="x").output_text == "via http"

    calls = httpx2.get(f"{root}/_fake/calls").json()
    assert calls["count"] == 1
    assert calls["calls"][0]["path"] == "/v1/responses"
    assert calls["calls"][0]["body"]["input"] == "x"
    assert httpx2.get(f"{root}/_fake/calls?count_only=1").json() == {"count": 1}

    bad = httpx2.post(f"{root}/_fake/behaviour", json={"fail": "teapot"})
    assert bad.status_code == 400
    assert httpx2.post(f"{root}/_fake/behaviour", json={"bogus": 1}).status_code == 400

    assert httpx2.post(f"{root}/_fake/reset").status_code == 200
    assert httpx2.get(f"{root}/_fake/calls").json() == {"count": 0, "calls": []}
    assert httpx2.get(f"{root}/_fake/behaviour").json()["answer_text"] is None


# --- timing ---------------------------------------------------------------------------------------


def test_stream_honours_ttft_and_latency(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    fake_openai.configure(ttft_s=0.1, latency_s=0.5)
    started = time.monotonic()
    first_delta = None
    for event in client.responses.create(model="m", input="hello", stream=True):
        if event.type == "response.output_text.delta" and first_delta is None:
            first_delta = time.monotonic() - started
    total = time.monotonic() - started
    assert first_delta is not None
    assert 0.1 <= first_delta < 0.3
    assert 0.45 <= total < 0.9


def test_non_stream_honours_latency(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    fake_openai.configure(ttft_s=0.05, latency_s=0.3)
    started = time.monotonic()
    client.chat.completions.create(model="m", messages=chat_messages("hello"))
    assert 0.3 <= time.monotonic() - started < 0.7


# --- async client and concurrency -------------------------------------------------------------


def test_async_client_stream_and_errors(fake_openai: FakeOpenAI) -> None:
    async def scenario() -> tuple[str, str]:
        async with async_client_for(fake_openai) as aclient:
            stream = await aclient.chat.completions.create(
                model="m", messages=chat_messages("hello async"), stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            resp = await aclient.responses.create(model="m", input="hello async")
            fake_openai.configure(fail="429", fail_times=1)
            with pytest.raises(openai.RateLimitError):
                await aclient.responses.create(model="m", input="x")
            return text, resp.output_text

    text, output_text = asyncio.run(scenario())
    assert text == output_text == answer_for("hello async")


def test_200_concurrent_async_streams(fake_openai: FakeOpenAI) -> None:
    # A short answer keeps the SDK's per-event parsing (the bulk of this test's CPU, all in
    # this one process) small, so the test measures concurrency rather than pydantic.
    answer = "Concurrent streams each get this short answer, one word per delta."
    fake_openai.configure(ttft_s=0.1, latency_s=0.5, answer_text=answer)
    count = 200

    async def one(aclient: openai.AsyncOpenAI, i: int) -> tuple[str, int]:
        stream = await aclient.responses.create(model="m", input=f"user {i} asks", stream=True)
        text, total = "", 0
        async for event in stream:
            if event.type == "response.output_text.delta":
                text += event.delta
            elif event.type == "response.completed":
                assert event.response.usage is not None
                total = event.response.usage.total_tokens
        return text, total

    async def scenario() -> list[tuple[str, int]]:
        async with async_client_for(fake_openai, timeout=20) as aclient:
            return await asyncio.gather(*(one(aclient, i) for i in range(count)))

    started = time.monotonic()
    results = asyncio.run(scenario())
    # About 2 s on an idle 2-core machine; the bound only leaves room for a busy one.
    assert time.monotonic() - started < 10
    assert [text for text, _ in results] == [answer] * count
    assert all(total > 0 for _, total in results)
    calls = fake_openai.calls
    assert sorted(c.body["input"] for c in calls) == sorted(f"user {i} asks" for i in range(count))
    assert {c.status for c in calls} == {200}
    # Truly concurrent: every request arrived before the first one could have finished.
    assert max(c.started for c in calls) - min(c.started for c in calls) < 0.5


# --- lifecycle ------------------------------------------------------------------------------------


def test_stop_is_prompt_with_a_hang_in_flight() -> None:
    server = FakeOpenAI(Behaviour(fail="hang", hang_s=60)).start()
    errors: list[BaseException] = []

    def hung_call() -> None:
        try:
            client_for(server, timeout=30).responses.create(model="m", input="x")
        except openai.APIError as exc:
            errors.append(exc)

    worker = threading.Thread(target=hung_call)
    worker.start()
    assert len(server.wait_for_calls(1)) == 1
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    worker.join(5)
    assert not worker.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], openai.APIConnectionError)


def test_context_manager_and_fixed_port() -> None:
    with FakeOpenAI() as probe:
        port = probe.port
    with FakeOpenAI(port=port) as server:
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
        assert client_for(server).models.list().data
    with pytest.raises(RuntimeError):
        _ = FakeOpenAI().base_url


def test_cli_runs_standalone_without_django() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    probe = (
        "import sys, devtools.fake_openai; "
        "sys.exit(1 if any(m.split('.')[0] == 'django' for m in sys.modules) else 0)"
    )
    # Fixed argument lists, no shell: nothing untrusted reaches these subprocesses.
    probed = subprocess.run([sys.executable, "-c", probe], env=env, check=False)  # noqa: S603
    assert probed.returncode == 0
    argv = ["--port", "0", "--ttft", "0.01", "--latency", "0.02", "--answer-text", "cli answer"]
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "devtools.fake_openai", *argv],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        cli_client = openai.OpenAI(api_key="t", base_url=base_url, max_retries=0, timeout=5)
        assert cli_client.responses.create(model="m", input="x").output_text == "cli answer"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0
