"""The default: safety rules, then the local classifier, the LLM only when it is unsure."""

import logging
import time

from config.llm import openai_configured
from config.selectors import ConfigSnapshot
from routing.selectors import RouteCatalog
from routing.strategies.base import RouteDecision, RoutingError, RoutingStrategy
from routing.strategies.llm import LLMStrategy
from routing.strategies.local import LocalStrategy
from routing.strategies.rules import emergency_match

logger = logging.getLogger(__name__)


class HybridStrategy(RoutingStrategy):
    name = "hybrid"

    def __init__(self) -> None:
        self.local = LocalStrategy()
        self.llm = LLMStrategy()

    def warm(self, catalog: RouteCatalog) -> None:
        emergency_match("warm-up", catalog)
        self.local.warm(catalog)

    def decide(
        self, text: str, *, catalog: RouteCatalog, config: ConfigSnapshot
    ) -> RouteDecision | None:
        started = time.perf_counter()
        emergency = emergency_match(text, catalog)
        if emergency is not None:
            return RouteDecision(
                route=emergency, confidence=1.0, source="rules", elapsed_ms=_ms(started)
            )

        local = self.local.decide(text, catalog=catalog, config=config)
        if local is not None and local.confidence >= config.confidence_threshold:
            return _timed(local, started)

        if config.llm_routing_enabled and openai_configured():
            try:
                decision = self.llm.decide(text, catalog=catalog, config=config)
            except RoutingError as exc:
                logger.warning("LLM router failed, keeping the local guess: %s", exc)
                if local is not None:
                    return RouteDecision(
                        route=local.route,
                        confidence=local.confidence,
                        source="local",
                        elapsed_ms=_ms(started),
                        upstream_calls=exc.upstream_calls,
                        note=str(exc),
                    )
                raise
            if decision is not None:
                return _timed(decision, started)
        # Unsure, and no LLM to ask: the classifier's best guess still beats a fixed default.
        return _timed(local, started) if local is not None else None


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _timed(decision: RouteDecision | None, started: float) -> RouteDecision | None:
    if decision is None:
        return None
    return RouteDecision(
        route=decision.route,
        confidence=decision.confidence,
        source=decision.source,
        elapsed_ms=_ms(started),
        upstream_calls=decision.upstream_calls,
        note=decision.note,
    )
