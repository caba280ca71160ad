"""A fake OpenAI-compatible upstream: a real HTTP server on loopback for tests and benchmarks.

ClubOS talks to OpenAI through the official SDK; tests and load benchmarks point that SDK at
this server instead of patching code, so the whole HTTP/SSE path is exercised for real.

It is a hand-written ASGI app served by uvicorn (no framework: per-chunk work must stay tiny
so one process can carry hundreds of slow concurrent streams on two cores). It must not import
Django: it also runs standalone, ``python -m devtools.fake_openai --port 8765``.

Endpoints: ``POST /v1/responses``, ``POST /v1/chat/completions`` (both with ``stream`` true or
false), ``GET /v1/models``; control endpoints without auth: ``GET|POST /_fake/behaviour``,
``GET /_fake/calls``, ``POST /_fake/reset``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import re
import socket
import sys
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qs

import uvicorn

__all__ = [
    "FAIL_MODES",
    "Behaviour",
    "Call",
    "FakeOpenAI",
    "FakeOpenAIApp",
    "answer_for",
    "guess_route",
    "main",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FAIL_MODES: Final = (None, "429", "500", "hang", "disconnect")
RESPONSES_PATH: Final = "/v1/responses"
CHAT_PATH: Final = "/v1/chat/completions"
MODELS_PATH: Final = "/v1/models"
# Failures are injected only where a model is called; listing models stays healthy unless a
# test asks for it explicitly through ``only_path``.
GENERATION_PATHS: Final = frozenset({RESPONSES_PATH, CHAT_PATH})
MODEL_IDS: Final = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-5-mini")


@dataclass
class Behaviour:
    """How the server answers. Mutable from any thread; each request reads one snapshot."""

    ttft_s: float = 0.02
    """Delay from request to the first streamed delta."""
    latency_s: float = 0.05
    """Time from request to the final byte (streamed), or before a non-streamed answer."""
    fail: str | None = None
    """None, "429", "500", "hang" or "disconnect"."""
    fail_times: int | None = None
    """Fail the next N matching calls, then behave normally (0 = none left); None = every call."""
    only_path: str | None = None
    """Restrict failures to this path (default: both generation endpoints)."""
    hang_s: float = 30.0
    """How long a "hang" failure sends nothing before closing the connection."""
    disconnect_after: int = 3
    """Deltas a streamed "disconnect" failure sends before dropping the connection."""
    answer_text: str | None = None
    """Fixed plain-text answer; None = a deterministic answer built from the user input."""
    route_answer: str | None = None
    """Fixed route slug for structured (JSON) answers; None = keyword guess."""
    route_confidence: float = 0.9
    tick_s: float = 0.01
    """Minimum gap between two writes of one stream: deltas falling due within a tick share a
    write (each is still sent no earlier than due). Writes, not bytes, cost CPU; raise it
    (e.g. 0.05) for load benchmarks that need the fake to stay cheap."""
    hold_end_s: float = 0.0
    """How long a stream's body stays open after its last event before it ends (a server or
    proxy that is slow to close a chunked body)."""

    def validate(self) -> None:
        if self.fail not in FAIL_MODES:
            raise ValueError(f"fail must be one of {FAIL_MODES}, not {self.fail!r}")
        if self.fail_times is not None and self.fail_times < 0:
            raise ValueError("fail_times must be >= 0 or None")
        for name in ("ttft_s", "latency_s", "hang_s", "tick_s", "hold_end_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


BEHAVIOUR_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(Behaviour))


@dataclass
class Call:
    """One request the server received (recorded before it is answered)."""

    path: str
    method: str
    model: str | None
    stream: bool
    body: Any
    started: float
    """time.monotonic() when the request arrived."""
    status: int | None = None
    """HTTP status sent; None while nothing was sent (in flight, hang, or dropped connection)."""
    failure: str | None = None
    """The injected failure mode, if any."""
    finished: float | None = None
    client: str | None = None
    """``host:port`` of the connection the request came on: the same for every request a
    client sends on one kept-alive connection."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Answer content


_ROUTE_PATTERNS: Final = (
    (
        "emergency",
        re.compile(
            r"\b(?:fire|smoke|smoking|burn|injur|hurt|bleed|blood|flood|leak|water everywhere|"
            r"power out|power cut|outage|no power|ambulance|emergenc|unconscious|gas smell|"
            r"smell gas|evacuat|electric shock|sparks?)",
            re.IGNORECASE,
        ),
    ),
    (
        "booking",
        re.compile(
            r"\b(?:book|reserv|refund|door|code|pin\b|locked out|lock|cancel|resched|"
            r"charged|payment|extend|time slot|my session)",
            re.IGNORECASE,
        ),
    ),
    (
        "tech",
        re.compile(
            r"\b(?:trackman|projector|screen|pc\b|computer|frozen|freez|wifi|wi-fi|internet|"
            r"crash|sensor|not tracking|ball data|software|login|simulator|display|black screen)",
            re.IGNORECASE,
        ),
    ),
)

_TEMPLATES: Final = (
    'Thanks for your message about "{head}". I have checked the venue notes and this is '
    "something the team can sort out quickly. First, confirm the bay number and the time of "
    "your visit. Next, follow the steps shown on the screen beside the door. If that does not "
    "help, reply here and a staff member will follow up within a few minutes.",
    'Here is what I found regarding "{head}". Most members in this situation are back in '
    "action within minutes. Please check that the app shows your current booking, then restart "
    "the session from the bay tablet. Should the issue continue, our remote support team can "
    "reset things from their side and will message you once it is done.",
    'You asked about "{head}". Good news: this is covered by the standard venue procedure. '
    "Staff can already see your account details, so there is no need to send them again. Give "
    "the system a moment, refresh the page and try once more. If it still looks wrong, we will "
    "escalate the ticket and keep you posted until it is resolved.",
)

_DELTA_SPLIT: Final = re.compile(r"\s*\S+|\s+$")


def guess_route(text: str) -> str:
    """A keyword guess at the ClubOS route of a request; anything unrecognised is "brand"."""
    for slug, pattern in _ROUTE_PATTERNS:
        if pattern.search(text):
            return slug
    return "brand"


def answer_for(user_text: str) -> str:
    """A deterministic, plausible answer that quotes the first words of the user input."""
    words = user_text.split()
    head = " ".join(words[:6]).replace('"', "'") or "your request"
    if len(words) > 6:
        head += "..."
    template = _TEMPLATES[zlib.crc32(user_text.encode()) % len(_TEMPLATES)]
    return template.format(head=head)


def split_deltas(text: str) -> list[str]:
    """Word-sized pieces (leading whitespace attached, like real deltas) that join to ``text``."""
    pieces = _DELTA_SPLIT.findall(text)
    return pieces or [text]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        return "\n".join(texts)
    return ""


def _last_user_text(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        # Items without a role (tool outputs, reasoning) are skipped unless they carry content.
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "user" or (role is None and "content" in message):
            return _content_text(message.get("content"))
    return ""


def _user_text(path: str, body: dict[str, Any]) -> str:
    if path == RESPONSES_PATH:
        return _last_user_text(body.get("input"))
    return _last_user_text(body.get("messages"))


def _prompt_text(path: str, body: dict[str, Any]) -> str:
    """Everything the caller sent as prompt, only to estimate input tokens."""
    if path == RESPONSES_PATH:
        parts = [body.get("instructions")]
        raw = body.get("input")
        if isinstance(raw, list):
            parts.extend(_content_text(m.get("content")) for m in raw if isinstance(m, dict))
        else:
            parts.append(raw)
    else:
        messages = body.get("messages")
        parts = [
            _content_text(m.get("content"))
            for m in (messages if isinstance(messages, list) else [])
            if isinstance(m, dict)
        ]
    return " ".join(p for p in parts if isinstance(p, str))


def _wants_json(path: str, body: dict[str, Any]) -> bool:
    if path == RESPONSES_PATH:
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
    else:
        fmt = body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object")


def _answer(path: str, body: dict[str, Any], behaviour: Behaviour) -> str:
    user_text = _user_text(path, body)
    if _wants_json(path, body):
        route = behaviour.route_answer or guess_route(user_text)
        return json.dumps({"route": route, "confidence": behaviour.route_confidence})
    if behaviour.answer_text is not None:
        return behaviour.answer_text
    return answer_for(user_text)


# ---------------------------------------------------------------------------------------------
# Wire formats


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    ).encode()


_ERR_401: Final = _error_body(
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    "invalid_request_error",
    None,
)
_ERR_429: Final = _error_body(
    "Rate limit reached for requests (fake upstream). Please try again in 0s.",
    "requests",
    "rate_limit_exceeded",
)
_ERR_500: Final = _error_body(
    "The server had an error while processing your request. Sorry about that!",
    "server_error",
    None,
)
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE: Final = b"data: [DONE]\n\n"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _sse(event: str, payload: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {_dumps(payload)}\n\n".encode()


def _responses_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _chat_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@dataclass(slots=True)
class _Plan:
    """Everything one generation request needs, computed once at its start."""

    path: str
    body: dict[str, Any]
    model: str
    text: str
    pieces: list[str]
    input_tokens: int
    ident: str
    item_id: str
    created: int

    @property
    def output_tokens(self) -> int:
        return len(self.pieces)


class _ResponsesFormat:
    """Responses API objects and the SSE events the SDK's stream parser expects."""

    @staticmethod
    def response(plan: _Plan, *, done: bool) -> dict[str, Any]:
        body = plan.body
        text_cfg = body.get("text") if isinstance(body.get("text"), dict) else None
        return {
            "id": plan.ident,
            "object": "response",
            "created_at": plan.created,
            "status": "completed" if done else "in_progress",
            "background": False,
            "completed_at": int(time.time()) if done else None,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": plan.model,
            "output": [_ResponsesFormat.item(plan, done=True)] if done else [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": text_cfg or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": _responses_usage(plan.input_tokens, plan.output_tokens) if done else None,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    @staticmethod
    def part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    @staticmethod
    def item(plan: _Plan, *, done: bool) -> dict[str, Any]:
        return {
            "id": plan.item_id,
            "type": "message",
            "status": "completed" if done else "in_progress",
            "content": [_ResponsesFormat.part(plan.text)] if done else [],
            "role": "assistant",
        }

    @staticmethod
    def stream(plan: _Plan) -> tuple[bytes, list[bytes], bytes]:
        """(preamble, one event per delta, closing events); sequence numbers are contiguous."""
        seq = itertools.count()
        in_progress = _ResponsesFormat.response(plan, done=False)
        preamble = _sse(
            "response.created",
            {"type": "response.created", "sequence_number": next(seq), "response": in_progress},
        ) + _sse(
            "response.in_progress",
            {"type": "response.in_progress", "sequence_number": next(seq), "response": in_progress},
        )
        first = _sse(
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "sequence_number": next(seq),
                "output_index": 0,
                "item": _ResponsesFormat.item(plan, done=False),
            },
        ) + _sse(
            "response.content_part.added",
            {
                "type": "response.content_part.added",
                "sequence_number": next(seq),
                "item_id": plan.item_id,
                "output_index": 0,
                "content_index": 0,
                "part": _ResponsesFormat.part(""),
            },
        )
        # Hand-assembled so each delta costs one small json.dumps of the word, not of an object.
        head = (
            'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            f'"item_id":"{plan.item_id}","output_index":0,"content_index":0,"logprobs":[],'
            '"sequence_number":'
        )
        deltas = [
            f'{head}{next(seq)},"delta":{json.dumps(piece)}}}\n\n'.encode() for piece in plan.pieces
        ]
        deltas[0] = first + deltas[0]
        closing = b"".join(
            (
                _sse(
                    "response.output_text.done",
                    {
                        "type": "response.output_text.done",
                        "sequence_number": next(seq),
                        "item_id": plan.item_id,
                        "output_index": 0,
                        "content_index": 0,
                        "text": plan.text,
                        "logprobs": [],
                    },
                ),
                _sse(
                    "response.content_part.done",
                    {
                        "type": "response.content_part.done",
                        "sequence_number": next(seq),
                        "item_id": plan.item_id,
                        "output_index": 0,
                        "content_index": 0,
                        "part": _ResponsesFormat.part(plan.text),
                    },
                ),
                _sse(
                    "response.output_item.done",
                    {
                        "type": "response.output_item.done",
                        "sequence_number": next(seq),
                        "output_index": 0,
                        "item": _ResponsesFormat.item(plan, done=True),
                    },
                ),
                _sse(
                    "response.completed",
                    {
                        "type": "response.completed",
                        "sequence_number": next(seq),
                        "response": _ResponsesFormat.response(plan, done=True),
                    },
                ),
            )
        )
        return preamble, deltas, closing


class _ChatFormat:
    """Chat Completions objects and ``chat.completion.chunk`` SSE lines."""

    @staticmethod
    def completion(plan: _Plan) -> dict[str, Any]:
        return {
            "id": plan.ident,
            "object": "chat.completion",
            "created": plan.created,
            "model": plan.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": plan.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _chat_usage(plan.input_tokens, plan.output_tokens),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

    @staticmethod
    def stream(plan: _Plan) -> tuple[bytes, list[bytes], bytes]:
        options = plan.body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        usage_tail = ',"usage":null' if include_usage else ""
        head = (
            f'data: {{"id":"{plan.ident}","object":"chat.completion.chunk",'
            f'"created":{plan.created},"model":{json.dumps(plan.model)},'
            '"system_fingerprint":"fp_fake","choices":[{"index":0,"delta":'
        )
        tail = f',"logprobs":null,"finish_reason":null}}]{usage_tail}}}\n\n'
        role = f'{head}{{"role":"assistant","content":"","refusal":null}}{tail}'.encode()
        deltas = [f'{head}{{"content":{json.dumps(p)}}}{tail}'.encode() for p in plan.pieces]
        deltas[0] = role + deltas[0]
        closing = f'{head}{{}},"logprobs":null,"finish_reason":"stop"}}]{usage_tail}}}\n\n'.encode()
        if include_usage:
            final = {
                "id": plan.ident,
                "object": "chat.completion.chunk",
                "created": plan.created,
                "model": plan.model,
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": _chat_usage(plan.input_tokens, plan.output_tokens),
            }
            closing += f"data: {_dumps(final)}\n\n".encode()
        return b"", deltas, closing + _DONE


# ---------------------------------------------------------------------------------------------
# The ASGI app


class _Aborted:
    """Returned to uvicorn when the transport could not be reached: a non-None return makes
    uvicorn close the connection without a response (it logs that as an error)."""


_ABORTED: Final = _Aborted()


def _cycle_of(send: Send) -> Any:
    """uvicorn's request cycle behind ``send`` (h11 and httptools both expose it this way).

    ASGI has no "drop the connection" message and no cheap disconnect flag for a sender, so the
    fake reaches for the cycle's transport and ``disconnected`` attribute when it can.
    """
    return getattr(send, "__self__", None)


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


def _client_gone(cycle: Any) -> bool:
    return bool(getattr(cycle, "disconnected", False))


class FakeOpenAIApp:
    """The ASGI application. Thread-safe state; the server loop runs in one thread."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self._defaults = dataclasses.replace(behaviour) if behaviour else Behaviour()
        self._defaults.validate()
        self.behaviour = dataclasses.replace(self._defaults)
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sleepers: set[asyncio.Future[None]] = set()
        self.stopping = False

    # -- state, callable from any thread --------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self.behaviour = dataclasses.replace(self._defaults)

    def set_behaviour(self, value: Behaviour) -> None:
        value.validate()
        with self._lock:
            self.behaviour = value

    def configure(self, **fields: Any) -> Behaviour:
        unknown = set(fields) - BEHAVIOUR_FIELDS
        if unknown:
            raise TypeError(f"unknown behaviour field(s): {', '.join(sorted(unknown))}")
        if "fail" in fields and fields["fail"] is not None:
            fields["fail"] = str(fields["fail"])
        with self._lock:
            candidate = dataclasses.replace(self.behaviour, **fields)
            candidate.validate()
            for name, value in fields.items():
                setattr(self.behaviour, name, value)
            return dataclasses.replace(self.behaviour)

    def begin_stop(self) -> None:
        """Wake every pending sleep so in-flight requests end now; call in the server loop."""
        self.stopping = True
        for fut in list(self._sleepers):
            if not fut.done():
                fut.set_result(None)

    def _snapshot_and_failure(self, path: str) -> tuple[Behaviour, str | None]:
        with self._lock:
            current = self.behaviour
            snapshot = dataclasses.replace(current)
            failure = current.fail
            if failure is None:
                return snapshot, None
            applies = path == current.only_path if current.only_path else path in GENERATION_PATHS
            if not applies:
                return snapshot, None
            if current.fail_times is not None:
                if current.fail_times <= 0:
                    return snapshot, None
                current.fail_times -= 1
            return snapshot, failure

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    # -- ASGI ------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> object:
        kind = scope["type"]
        if kind == "http":
            return await self._http(scope, receive, send)
        if kind == "lifespan":
            await self._lifespan(receive, send)
        return None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                self.stopping = False
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _sleep(self, delay: float) -> None:
        """asyncio.sleep that ``begin_stop`` can cut short (it costs the same: one future, one
        timer)."""
        if delay <= 0 or self.stopping:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(delay, _resolve, fut)
        self._sleepers.add(fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._sleepers.discard(fut)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> object:
        path: str = scope["path"]
        if len(path) > 1:
            path = path.rstrip("/")
        method: str = scope["method"]
        # Timing is measured from arrival, as a client would measure it; so is the call's
        # own time in the log (reading and parsing the request is the upstream's work too).
        arrived = asyncio.get_running_loop().time()
        started = time.monotonic()
        raw = await _read_body(receive)
        if path.startswith("/_fake/"):
            await self._control(path, method, scope, raw, send)
            return None

        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        as_dict: dict[str, Any] = body if isinstance(body, dict) else {}
        model = as_dict.get("model")
        call = Call(
            path=path,
            method=method,
            model=model if isinstance(model, str) else None,
            stream=bool(as_dict.get("stream")),
            body=body,
            started=started,
            client=_peer(scope),
        )
        self._record(call)
        try:
            return await self._api(scope, receive, send, call, as_dict, arrived)
        finally:
            call.finished = time.monotonic()

    async def _api(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        call: Call,
        body: dict[str, Any],
        start: float,
    ) -> object:
        path, method = call.path, call.method
        if not _has_bearer(scope):
            await _send_json(send, call, 401, _ERR_401)
            return None
        routes = {RESPONSES_PATH: "POST", CHAT_PATH: "POST", MODELS_PATH: "GET"}
        if path not in routes:
            err = _error_body(
                f"Unknown request URL: {method} {path}.", "invalid_request_error", None
            )
            await _send_json(send, call, 404, err)
            return None
        if method != routes[path]:
            err = _error_body(f"Method {method} not allowed.", "invalid_request_error", None)
            await _send_json(send, call, 405, err)
            return None

        behaviour, failure = self._snapshot_and_failure(path)
        call.failure = failure
        if failure == "429":
            headers = [(b"retry-after", b"0"), (b"x-ratelimit-remaining-requests", b"0")]
            await _send_json(send, call, 429, _ERR_429, headers)
            return None
        if failure == "500":
            await _send_json(send, call, 500, _ERR_500)
            return None
        if failure == "hang":
            return await self._hang(receive, send, behaviour.hang_s)

        if path == MODELS_PATH:
            if failure == "disconnect":
                return await _abort(send)
            await _send_json(send, call, 200, _models_body())
            return None

        if path == CHAT_PATH and not isinstance(body.get("messages"), list):
            err = _error_body(
                "Missing required parameter: 'messages'.", "invalid_request_error", None, "messages"
            )
            await _send_json(send, call, 400, err)
            return None
        if path == RESPONSES_PATH and "input" not in body:
            err = _error_body(
                "Missing required parameter: 'input'.", "invalid_request_error", None, "input"
            )
            await _send_json(send, call, 400, err)
            return None

        plan = self._plan(path, body, behaviour)
        if call.stream:
            return await self._stream(send, call, plan, behaviour, start, failure)
        await self._sleep(start + behaviour.latency_s - asyncio.get_running_loop().time())
        if failure == "disconnect" or self.stopping:
            return await _abort(send)
        if path == RESPONSES_PATH:
            obj = _ResponsesFormat.response(plan, done=True)
        else:
            obj = _ChatFormat.completion(plan)
        await _send_json(send, call, 200, _dumps(obj).encode())
        return None

    def _plan(self, path: str, body: dict[str, Any], behaviour: Behaviour) -> _Plan:
        text = _answer(path, body, behaviour)
        n = next(self._ids)
        model = body.get("model")
        return _Plan(
            path=path,
            body=body,
            model=model if isinstance(model, str) else "gpt-4o-mini",
            text=text,
            pieces=split_deltas(text),
            input_tokens=max(1, len(_prompt_text(path, body)) // 4),
            ident=(f"resp_fake{n:012x}" if path == RESPONSES_PATH else f"chatcmpl-fake{n:012x}"),
            item_id=f"msg_fake{n:012x}",
            created=int(time.time()),
        )

    async def _stream(
        self,
        send: Send,
        call: Call,
        plan: _Plan,
        behaviour: Behaviour,
        start: float,
        failure: str | None,
    ) -> object:
        if plan.path == RESPONSES_PATH:
            preamble, deltas, closing = _ResponsesFormat.stream(plan)
        else:
            preamble, deltas, closing = _ChatFormat.stream(plan)
        cycle = _cycle_of(send)
        loop = asyncio.get_running_loop()
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        call.status = 200
        pending: list[bytes] = [preamble] if preamble else []

        ttft = behaviour.ttft_s
        latency = max(behaviour.latency_s, ttft)
        step = (latency - ttft) / (len(deltas) - 1) if len(deltas) > 1 else 0.0
        first_due = start + ttft
        last_due = first_due + (len(deltas) - 1) * step
        cut = behaviour.disconnect_after if failure == "disconnect" else len(deltas)
        woke = -1.0
        for index, chunk in enumerate(deltas[:cut]):
            due = first_due + index * step
            now = loop.time()
            if due > now:
                # Flush what is already due, then wait for this delta, but wake at most once
                # per tick: deltas due in between go out together, never before they are due,
                # and the last one is never pushed past its own due time.
                if pending:
                    await send(_body_message(b"".join(pending)))
                    pending.clear()
                wake = min(max(due, woke + behaviour.tick_s), last_due)
                await self._sleep(wake - now)
                woke = loop.time()
                if self.stopping or _client_gone(cycle):
                    return await _abort(send)
            pending.append(chunk)
        if failure == "disconnect":
            if pending:
                await send(_body_message(b"".join(pending)))
            return await _abort(send)
        pending.append(closing)
        if behaviour.hold_end_s > 0:
            await send(_body_message(b"".join(pending)))
            pending.clear()
            await self._sleep(behaviour.hold_end_s)
        await send({"type": "http.response.body", "body": b"".join(pending), "more_body": False})
        return None

    async def _hang(self, receive: Receive, send: Send, hang_s: float) -> object:
        # Watch receive() too so a client that gives up frees its slot instead of pinning a
        # task for the whole hang.
        gone = asyncio.ensure_future(receive())
        waited = asyncio.ensure_future(self._sleep(hang_s))
        try:
            await asyncio.wait({gone, waited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            waited.cancel()
        return await _abort(send)

    # -- control endpoints -----------------------------------------------------------------------

    async def _control(self, path: str, method: str, scope: Scope, raw: bytes, send: Send) -> None:
        if path == "/_fake/behaviour" and method == "GET":
            await _send_plain(send, 200, _dumps(self.behaviour.to_dict()).encode())
        elif path == "/_fake/behaviour" and method == "POST":
            try:
                fields = json.loads(raw or b"{}")
                if not isinstance(fields, dict):
                    raise TypeError("body must be a JSON object")
                current = self.configure(**fields)
            except (ValueError, TypeError) as exc:
                await _send_plain(send, 400, _dumps({"error": str(exc)}).encode())
                return
            await _send_plain(send, 200, _dumps(current.to_dict()).encode())
        elif path == "/_fake/calls" and method == "GET":
            calls = self.calls
            query = parse_qs(scope.get("query_string", b"").decode())
            payload: dict[str, Any] = {"count": len(calls)}
            if query.get("count_only", ["0"])[0] not in ("1", "true"):
                limit = query.get("limit")
                listed = calls[-int(limit[0]) :] if limit and limit[0].isdigit() else calls
                payload["calls"] = [c.to_dict() for c in listed]
            await _send_plain(send, 200, _dumps(payload).encode())
        elif path == "/_fake/reset" and method == "POST":
            self.reset()
            await _send_plain(send, 200, _dumps(self.behaviour.to_dict()).encode())
        else:
            await _send_plain(send, 404, _dumps({"error": f"no control {method} {path}"}).encode())


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _body_message(data: bytes) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": True}


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _has_bearer(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return scheme.lower() == b"bearer" and bool(token.strip())
    return False


def _models_body() -> bytes:
    return _dumps(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "system"}
                for m in MODEL_IDS
            ],
        }
    ).encode()


async def _send_plain(
    send: Send, status: int, data: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(data)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


async def _send_json(
    send: Send,
    call: Call,
    status: int,
    data: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    call.status = status
    await _send_plain(send, status, data, extra)


async def _abort(send: Send) -> object:
    """Drop the connection: the client sees a truncated stream or no response at all."""
    transport = getattr(_cycle_of(send), "transport", None)
    if transport is None or not hasattr(transport, "close"):
        return _ABORTED
    transport.close()
    # Let connection_lost run first, so uvicorn sees a disconnected client rather than an app
    # that forgot to finish its response (which it would log as an error).
    for _ in range(3):
        await asyncio.sleep(0)
    return None


# ---------------------------------------------------------------------------------------------
# The server


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    # Binding here rather than in uvicorn gives the real port before the loop starts, for port=0.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, also waking the app's sleeping requests when asked to exit.

    uvicorn waits for in-flight requests before it stops; a "hang" or a slow stream would hold
    shutdown for seconds, so exiting first cuts their sleeps short.
    """

    def __init__(self, config: uvicorn.Config, app: FakeOpenAIApp) -> None:
        super().__init__(config)
        self.fake_app = app

    def _wake_app(self) -> None:
        loop = self.fake_app._loop
        if loop is not None and not loop.is_closed():
            # The loop may close between the check and the call: then nothing is left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.fake_app.begin_stop)

    def request_exit(self) -> None:
        self._wake_app()
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Leave should_exit to uvicorn: it reads a second SIGINT as "force quit".
        self._wake_app()
        super().handle_exit(sig, frame)


class FakeOpenAI:
    """The fake upstream server. ``start()`` runs it in a background thread.

    Example::

        with FakeOpenAI(Behaviour(ttft_s=0.1, latency_s=0.5)) as server:
            client = openai.OpenAI(api_key="test", base_url=server.base_url)
            server.configure(fail="429", fail_times=1)
    """

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        http: str = "auto",
        loop: str = "auto",
        backlog: int = 4096,
    ) -> None:
        self.app = FakeOpenAIApp(behaviour)
        self.host = host
        self._requested_port = port
        self._http = http
        self._loop_kind = loop
        self._backlog = backlog
        self._sock: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- state proxies ---------------------------------------------------------------------------

    @property
    def behaviour(self) -> Behaviour:
        return self.app.behaviour

    @behaviour.setter
    def behaviour(self, value: Behaviour) -> None:
        self.app.set_behaviour(value)

    @property
    def calls(self) -> list[Call]:
        """A snapshot of every call so far, oldest first."""
        return self.app.calls

    def configure(self, **fields: Any) -> Behaviour:
        """Set behaviour fields atomically, e.g. ``configure(fail="429", fail_times=1)``."""
        return self.app.configure(**fields)

    def reset(self) -> None:
        """Forget calls and restore the behaviour the server was created with."""
        self.app.reset()

    def wait_for_calls(self, count: int, timeout: float = 5.0) -> list[Call]:
        """Block until at least ``count`` calls were received (for requests still in flight)."""
        deadline = time.monotonic() + timeout
        while True:
            calls = self.calls
            if len(calls) >= count or time.monotonic() >= deadline:
                return calls
            time.sleep(0.005)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _config(self, log_level: str) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            http=self._http,
            loop=self._loop_kind,
            ws="none",
            lifespan="on",
            interface="asgi3",
            # The SDK holds keep-alive connections between tests; a short idle timeout is fine.
            timeout_keep_alive=30,
            timeout_graceful_shutdown=2,
            proxy_headers=False,
            server_header=False,
            date_header=False,
            access_log=False,
            log_config=None,
            log_level=log_level,
            backlog=self._backlog,
        )

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            return self
        self._sock = _bind(self.host, self._requested_port, self._backlog)
        self._port = self._sock.getsockname()[1]
        server = _Server(self._config("warning"), self.app)
        self._server = server
        sock = self._sock
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-openai", daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("FakeOpenAI failed to start")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.request_exit()
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server = None
        self._thread = None
        self._sock = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def serve_forever(self, log_level: str = "warning") -> None:
        """Run in the calling (main) thread until SIGINT/SIGTERM; used by the CLI."""
        self._sock = _bind(self.host, self._requested_port, self._backlog)
        self._port = self._sock.getsockname()[1]
        logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
        server = _Server(self._config(log_level), self.app)
        self._server = server
        print(self.base_url, flush=True)
        server.run(sockets=[self._sock])


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.fake_openai",
        description="Fake OpenAI-compatible upstream for ClubOS tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--ttft", type=float, default=Behaviour.ttft_s, help="seconds")
    parser.add_argument("--latency", type=float, default=Behaviour.latency_s, help="seconds")
    parser.add_argument("--fail", choices=[m for m in FAIL_MODES if m], default=None)
    parser.add_argument("--fail-times", type=int, default=None)
    parser.add_argument("--only-path", default=None, help="e.g. /v1/chat/completions")
    parser.add_argument("--hang", type=float, default=Behaviour.hang_s, help="seconds")
    parser.add_argument("--disconnect-after", type=int, default=Behaviour.disconnect_after)
    parser.add_argument("--answer-text", default=None)
    parser.add_argument("--route-answer", default=None)
    parser.add_argument("--route-confidence", type=float, default=Behaviour.route_confidence)
    parser.add_argument("--tick", type=float, default=Behaviour.tick_s, help="seconds")
    parser.add_argument(
        "--hold-end",
        type=float,
        default=Behaviour.hold_end_s,
        help="seconds a stream's body stays open after its last event",
    )
    parser.add_argument("--http", default="auto", help="uvicorn HTTP implementation")
    parser.add_argument("--loop", default="auto", help="uvicorn event loop")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    behaviour = Behaviour(
        ttft_s=args.ttft,
        latency_s=args.latency,
        fail=args.fail,
        fail_times=args.fail_times,
        only_path=args.only_path,
        hang_s=args.hang,
        disconnect_after=args.disconnect_after,
        answer_text=args.answer_text,
        route_answer=args.route_answer,
        route_confidence=args.route_confidence,
        tick_s=args.tick,
        hold_end_s=args.hold_end,
    )
    try:
        server = FakeOpenAI(
            behaviour, host=args.host, port=args.port, http=args.http, loop=args.loop
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # uvicorn has already shut down gracefully by then: Ctrl+C is the normal way to stop.
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
