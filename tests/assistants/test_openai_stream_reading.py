"""Reading an OpenAI-compatible stream: events split across network reads, the text they
add, and only the events that matter parsed."""

import itertools

import pytest

from assistants.backends.base import AssistantError
from assistants.backends.openai_backends import (
    SSEDecoder,
    _ChatProtocol,
    _chunk_text,
    _ResponsesProtocol,
)


def sse(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


def delta(text: str) -> bytes:
    return sse(
        "response.output_text.delta", f'{{"type":"response.output_text.delta","delta":"{text}"}}'
    )


COMPLETED = sse(
    "response.completed",
    '{"type":"response.completed","response":{"model":"m-1","usage":{"input_tokens":7,"output_tokens":3}}}',
)


def test_an_event_split_across_reads_is_read_once_whole():
    body = delta("Reboot ") + delta("the unit.") + COMPLETED
    decoder, protocol = SSEDecoder(), _ResponsesProtocol("m-0")
    cuts = [0, 9, 40, 41, len(body) - 5, len(body)]
    text = "".join(_chunk_text(decoder, protocol, body[a:b]) for a, b in itertools.pairwise(cuts))
    assert text == "Reboot the unit."
    completion = protocol.completion(text)
    assert (completion.model, completion.tokens_in, completion.tokens_out) == ("m-1", 7, 3)


def test_events_that_add_nothing_are_not_parsed():
    # The .done events repeat the whole answer; one that is not even valid JSON is skipped.
    body = (
        sse("response.created", '{"type":"response.created", "response": {"instructions": "..."}}')
        + delta("Reboot.")
        + sse("response.output_item.done", "{not json")
        + COMPLETED
    )
    decoder, protocol = SSEDecoder(), _ResponsesProtocol("m-0")
    assert _chunk_text(decoder, protocol, body) == "Reboot."
    assert protocol.completion("Reboot.").tokens_out == 3


def test_a_failure_event_still_stops_the_answer():
    decoder, protocol = SSEDecoder(), _ResponsesProtocol("m-0")
    body = delta("Reb") + sse("response.failed", '{"type":"response.failed"}')
    with pytest.raises(AssistantError, match=r"response\.failed"):
        _chunk_text(decoder, protocol, body)


def test_a_server_that_names_no_events_is_read_in_full():
    decoder, protocol = SSEDecoder(), _ResponsesProtocol("m-0")
    body = b'data: {"type":"response.output_text.delta","delta":"Hi"}\n\n' + b"data: [DONE]\n\n"
    assert _chunk_text(decoder, protocol, body) == "Hi"

    chat = b'data: {"model":"c-1","choices":[{"delta":{"content":"Hello"},"finish_reason":"stop"}]}\n\n'
    decoder, protocol = SSEDecoder(), _ChatProtocol("c-0")
    assert _chunk_text(decoder, protocol, chat) == "Hello"
    assert protocol.completion("Hello").model == "c-1"
