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

    def decide(
        self, text: str, *, catalog: RouteCatalog, config: ConfigSnapshot
    ) -> RouteDecision | None:
        started = time.perf_counter()
        model = local_router_model.get(catalog.fingerprint)
        if model is None:
            return None
        prediction = model.predict(text)
        route = catalog.get(prediction.slug)
        if route is None or not route.enabled:
            return None
        return RouteDecision(
            route=route,
            confidence=prediction.confidence,
            source="local",
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )
