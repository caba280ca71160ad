"""Local routing: the trained classifier, in-process, no network."""

import time

from config.selectors import ConfigSnapshot
from routing.classifier import local_router_model
from routing.selectors import RouteCatalog
from routing.strategies.base import RouteDecision, RoutingStrategy


class LocalStrategy(RoutingStrategy):
    """Always has an opinion (if any route has examples); its confidence is calibrated."""

    name = "local"

    def warm(self, catalog: RouteCatalog) -> None:
        local_router_model.get(catalog.fingerprint)

    def ready(self, catalog: RouteCatalog) -> bool:
        return local_router_model.ready(catalog.fingerprint)

    def knows(self, text: str, catalog: RouteCatalog) -> bool:
        """Whether the text is one of the examples the classifier was trained on."""
        model = local_router_model.get(catalog.fingerprint)
        return model is not None and model.knows(text)

    def route_probabilities(self, text: str, catalog: RouteCatalog) -> dict[str, float]:
        """The classifier's probability for each enabled route (empty with no model)."""
        model = local_router_model.get(catalog.fingerprint)
        if model is None:
            return {}
        return {
            slug: p
            for slug, p in model.predict_proba(text).items()
            if (route := catalog.get(slug)) is not None and route.enabled
        }

    def decide(
        self,
        text: str,
        *,
        catalog: RouteCatalog,
        config: ConfigSnapshot,
    ) -> RouteDecision | None:
        started = time.perf_counter()
        probs = self.route_probabilities(text, catalog)
        if not probs:
            return None
        best = max(probs, key=probs.__getitem__)
        return RouteDecision(
            route=catalog.by_slug[best],
            confidence=probs[best],
            source="local",
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )
