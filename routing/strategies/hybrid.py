"""The default: safety rules, then the local classifier, the LLM only when it is unsure."""

import logging
import time

from config.llm import openai_configured
from config.selectors import ConfigSnapshot
from routing.selectors import RouteCatalog, RouteSnapshot
from routing.strategies.base import RouteDecision, RoutingError, RoutingStrategy
from routing.strategies.llm import LLMStrategy
from routing.strategies.local import LocalStrategy
from routing.strategies.rules import emergency_match

logger = logging.getLogger(__name__)

# The safety rules catch emergencies (recall first); when they stay silent, the classifier
# calling "emergency" is usually wrong (a terse "bay 4 dead", a "hi there"), and a false
# emergency pages a manager. Cross-validated on routing/data, demanding 0.9 cut false
# emergencies from 24 to 1 while still catching the one emergency the rules missed.
CLASSIFIER_EMERGENCY_MIN = 0.9


class HybridStrategy(RoutingStrategy):
    name = "hybrid"

    def __init__(self) -> None:
        self.local = LocalStrategy()
        self.llm = LLMStrategy()

    def warm(self, catalog: RouteCatalog) -> None:
        emergency_match("warm-up", catalog)
        self.local.warm(catalog)

    def ready(self, catalog: RouteCatalog) -> bool:
        return self.local.ready(catalog)

    def decide(
        self, text: str, *, catalog: RouteCatalog, config: ConfigSnapshot
    ) -> RouteDecision | None:
        started = time.perf_counter()
        sure, local = self._without_llm(text, catalog, config)
        if sure is not None or not self._asks_llm(config):
            return self._settled(sure, local, started)
        try:
            asked = self.llm.decide(text, catalog=catalog, config=config)
        except RoutingError as exc:
            return self._llm_failed(exc, local, started)
        return self._llm_answered(asked, local, started)

    async def adecide(
        self, text: str, *, catalog: RouteCatalog, config: ConfigSnapshot
    ) -> RouteDecision | None:
        """``decide`` on the event loop: the rules and the classifier there, and only an
        unsure request's question to the LLM in a thread."""
        started = time.perf_counter()
        sure, local = self._without_llm(text, catalog, config)
        if sure is not None or not self._asks_llm(config):
            return self._settled(sure, local, started)
        try:
            asked = await self.llm.adecide(text, catalog=catalog, config=config)
        except RoutingError as exc:
            return self._llm_failed(exc, local, started)
        return self._llm_answered(asked, local, started)

    def _without_llm(
        self, text: str, catalog: RouteCatalog, config: ConfigSnapshot
    ) -> tuple[RouteDecision | None, RouteDecision | None]:
        """The decision when the rules or a confident classifier settle it, and the
        classifier's guess either way."""
        emergency = emergency_match(text, catalog)
        if emergency is not None:
            return RouteDecision(route=emergency, confidence=1.0, source="rules"), None
        local = self._local(text, catalog)
        if local is not None and local.confidence >= config.confidence_threshold:
            return local, local
        return None, local

    @staticmethod
    def _asks_llm(config: ConfigSnapshot) -> bool:
        return config.llm_routing_enabled and openai_configured()

    @staticmethod
    def _settled(
        sure: RouteDecision | None, local: RouteDecision | None, started: float
    ) -> RouteDecision | None:
        # Unsure, and no LLM to ask: the classifier's best guess still beats a fixed default.
        decision = sure or local
        if decision is None:
            return None
        return _decision(decision.route, decision.confidence, decision.source, started)

    @staticmethod
    def _llm_failed(
        exc: RoutingError, local: RouteDecision | None, started: float
    ) -> RouteDecision:
        logger.warning("LLM router failed, keeping the local guess: %s", exc)
        if local is None:
            raise exc
        return _decision(
            local.route, local.confidence, "local", started, exc.upstream_calls, str(exc)
        )

    @staticmethod
    def _llm_answered(
        asked: RouteDecision | None, local: RouteDecision | None, started: float
    ) -> RouteDecision | None:
        if asked is not None:
            return _decision(asked.route, asked.confidence, "llm", started, asked.upstream_calls)
        return HybridStrategy._settled(None, local, started)

    def _local(self, text: str, catalog: RouteCatalog) -> RouteDecision | None:
        probs = self.local.route_probabilities(text, catalog)
        if not probs:
            return None
        best = max(probs, key=probs.__getitem__)
        if catalog.by_slug[best].is_emergency and probs[best] < CLASSIFIER_EMERGENCY_MIN:
            others = {s: p for s, p in probs.items() if not catalog.by_slug[s].is_emergency}
            total = sum(others.values())
            if others and total > 0:
                best = max(others, key=others.__getitem__)
                probs = {s: p / total for s, p in others.items()}
        return RouteDecision(route=catalog.by_slug[best], confidence=probs[best], source="local")


def _decision(
    route: RouteSnapshot,
    confidence: float,
    source: str,
    started: float,
    upstream_calls: int = 0,
    note: str = "",
) -> RouteDecision:
    return RouteDecision(
        route=route,
        confidence=confidence,
        source=source,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        upstream_calls=upstream_calls,
        note=note,
    )
