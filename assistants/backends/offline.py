"""Answers from the route's own SOP entries: useful with no key, and never down."""

import re
from collections.abc import AsyncIterator

from assistants.backends.base import (
    AssistantBackend,
    AssistantRequest,
    Completion,
    StreamEvent,
    TextDelta,
)
from routing.selectors import KnowledgeSnapshot

OFFLINE_MODEL = "offline-sop"

_WORD = re.compile(r"[a-z0-9]+")
# Words that say nothing about which procedure applies.
_STOP = frozenset(
    (
        "a an the and or but is are was were be been it its this that to of in on at for "
        "with i we you he she they my our your me us can could would should do does did "
        "not no have has had there what how why when where who please help need just got "
        "get"
    ).split()
)


def _stems(text: str) -> set[str]:
    # Crude stemming (first five letters) so "frozen" meets "freeze" and "refunds" "refund".
    return {w[:5] for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def _score(entry: KnowledgeSnapshot, words: set[str], text: str) -> float:
    lowered = text.lower()
    score = 0.0
    for keyword in entry.keywords:
        k = keyword.lower()
        if k and k in lowered:
            score += 3.0 + k.count(" ")
    score += 1.5 * len(words & _stems(entry.title))
    score += 0.25 * len(words & _stems(entry.body))
    return score


def knowledge_best(entries: tuple[KnowledgeSnapshot, ...], text: str) -> list[KnowledgeSnapshot]:
    """The entries that fit the text, best first (at most two)."""
    words = _stems(text)
    scored = sorted(((_score(e, words, text), i) for i, e in enumerate(entries)), reverse=True)
    best = [entries[i] for s, i in scored if s >= 1.5][:2]
    if len(best) == 2 and _score(best[1], words, text) < 0.6 * _score(best[0], words, text):
        best = best[:1]
    return best


def offline_answer(request: AssistantRequest) -> str:
    route = request.route
    matches = knowledge_best(route.knowledge, request.text)
    if matches:
        sections = [f"**{m.title}**\n{m.body.strip()}" for m in matches]
        intro = f"From the {route.name} procedures:"
        return "\n\n".join([intro, *sections])
    if route.knowledge:
        titles = "\n".join(f"- {k.title}" for k in route.knowledge)
        return (
            f"No {route.name} procedure matches this exactly. The procedures on file are:\n"
            f"{titles}\n\nIf none fits, escalate to a manager with the details."
        )
    return f"There are no {route.name} procedures on file yet. Escalate to a manager."


class OfflineBackend(AssistantBackend):
    name = "offline"
    calls_upstream = False

    async def astream(self, request: AssistantRequest) -> AsyncIterator[StreamEvent]:
        answer = offline_answer(request)
        # Stream in line-sized pieces so the console and SSE clients behave as with a model.
        for piece in answer.splitlines(keepends=True):
            yield TextDelta(piece)
        yield Completion(text=answer, model=OFFLINE_MODEL)
