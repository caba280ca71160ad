"""The old way: ask the model which route fits, as JSON ``{route, confidence}``.

Costs one extra upstream call per request; kept for requests the local router is unsure
of and for comparison. It never answers the request itself.
"""

import json
import time

import httpx2
import openai
from django.conf import settings

from config.llm import UpstreamNotConfigured, openai_client
from config.selectors import ConfigSnapshot
from routing.selectors import RouteCatalog
from routing.strategies.base import RouteDecision, RoutingError, RoutingStrategy

# Routing is a short classification: it gets a tight budget of its own.
LLM_ROUTING_TIMEOUT_S = 8.0


def _schema(slugs: list[str]) -> dict[str, object]:
    return {
        "type": "object",
        "properties": {
            "route": {"type": "string", "enum": slugs},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["route", "confidence"],
        "additionalProperties": False,
    }


def routing_prompt(catalog: RouteCatalog) -> str:
    lines = [
        "You route requests from the staff of 24/7 golf-simulator venues to the one "
        "assistant that should handle them. Safety comes first: anything that may involve "
        "injury, fire, smoke, flooding, power loss, a break-in or an aggressive person is "
        "'emergency'. Answer only with JSON: the route's slug and your confidence (0 to 1).",
        "",
        "Routes:",
    ]
    lines += [f"- {r.slug}: {r.name}. {r.description}" for r in catalog.enabled]
    return "\n".join(lines)


class LLMStrategy(RoutingStrategy):
    name = "llm"
    waits = True  # one model call, through the SDK, in a thread

    def decide(
        self,
        text: str,
        *,
        catalog: RouteCatalog,
        config: ConfigSnapshot,
    ) -> RouteDecision | None:
        slugs = [r.slug for r in catalog.enabled]
        if not slugs:
            return None
        started = time.perf_counter()
        timeout = httpx2.Timeout(LLM_ROUTING_TIMEOUT_S, connect=3.0)
        try:
            client = openai_client()
        except UpstreamNotConfigured as exc:
            raise RoutingError(str(exc)) from exc
        try:
            if settings.ASSISTANT_BACKEND == "openai-chat":
                chat = client.chat.completions.create(
                    model=config.llm_routing_model,
                    messages=[
                        {"role": "system", "content": routing_prompt(catalog)},
                        {"role": "user", "content": text},
                    ],
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": "route_decision", "schema": _schema(slugs)},
                    },
                    timeout=timeout,
                )
                raw = chat.choices[0].message.content or ""
            else:
                response = client.responses.create(
                    model=config.llm_routing_model,
                    instructions=routing_prompt(catalog),
                    input=text,
                    store=False,
                    text={
                        "format": {
                            "type": "json_schema",
                            "name": "route_decision",
                            "schema": _schema(slugs),
                            "strict": True,
                        }
                    },
                    timeout=timeout,
                )
                raw = response.output_text
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise RoutingError(f"LLM router failed: {exc}", upstream_calls=1) from exc
        try:
            data = json.loads(raw)
            route = catalog.get(str(data["route"]))
            confidence = min(max(float(data["confidence"]), 0.0), 1.0)
        except (ValueError, KeyError, TypeError) as exc:
            raise RoutingError(f"LLM router answered {raw[:80]!r}", upstream_calls=1) from exc
        if route is None or not route.enabled:
            raise RoutingError(
                f"LLM router chose an unknown route {data['route']!r}", upstream_calls=1
            )
        return RouteDecision(
            route=route,
            confidence=confidence,
            source="llm",
            elapsed_ms=(time.perf_counter() - started) * 1000,
            upstream_calls=1,
        )
