"""Turning a request's text (or the person's choice) into a ``RouteDecision``."""

import logging
import threading
import time
from collections.abc import Callable

from config.selectors import ConfigSnapshot
from routing.selectors import RouteCatalog, RouteSnapshot
from routing.strategies import STRATEGIES, RouteDecision, RoutingError, RoutingStrategy
from routing.strategies.base import no_wait

logger = logging.getLogger(__name__)

AUTO = "auto"

_instances: dict[str, RoutingStrategy] = {}
_lock = threading.Lock()


def strategy_get(name: str) -> RoutingStrategy:
    """The process's instance of a strategy (strategies keep compiled state)."""
    strategy = _instances.get(name)
    if strategy is None:
        with _lock:
            strategy = _instances.setdefault(name, STRATEGIES[name]())
    return strategy


class UnknownRoute(ValueError):
    pass


def _default_decision(catalog: RouteCatalog, config: ConfigSnapshot) -> RouteSnapshot:
    route = catalog.get(config.default_route_slug)
    if route is not None and route.enabled:
        return route
    enabled = catalog.enabled
    if not enabled:
        raise UnknownRoute("no route is enabled")
    return enabled[-1]


def routing_ready(*, requested: str, catalog: RouteCatalog, config: ConfigSnapshot) -> bool:
    """Whether ``route_decide`` can start at once, with nothing to build or train first."""
    return requested != AUTO or strategy_get(config.routing_strategy).ready(catalog)


def route_decide(
    *,
    text: str,
    requested: str,
    catalog: RouteCatalog,
    config: ConfigSnapshot,
    before_wait: Callable[[], None] = no_wait,
) -> RouteDecision:
    """Decide the route. A chosen route costs nothing; 'auto' runs the configured strategy.

    ``before_wait`` runs right before a strategy waits on a model (``RoutingStrategy``).

    The configured strategy's failure (the LLM router's upstream down, say) falls back to
    the keyword rules, then to the default route: routing never fails a request.
    """
    started = time.perf_counter()
    if requested != AUTO:
        route = catalog.get(requested)
        if route is None or not route.enabled:
            raise UnknownRoute(f"unknown or disabled route {requested!r}")
        return RouteDecision(route=route, confidence=1.0, source="manual")

    upstream_calls = 0
    note = ""
    chain = [config.routing_strategy]
    if config.routing_strategy != "rules":
        chain.append("rules")
    for name in chain:
        if name == "llm" and not config.llm_routing_enabled:
            continue
        try:
            decision = strategy_get(name).decide(
                text, catalog=catalog, config=config, before_wait=before_wait
            )
        except RoutingError as exc:
            upstream_calls += exc.upstream_calls
            note = str(exc)
            logger.warning("routing strategy %s failed: %s", name, exc)
            continue
        if decision is not None:
            return _finish(decision, started, upstream_calls, note)
    default = RouteDecision(
        route=_default_decision(catalog, config), confidence=0.0, source="default"
    )
    return _finish(default, started, upstream_calls, note)


def _finish(
    decision: RouteDecision, started: float, upstream_calls: int, note: str
) -> RouteDecision:
    return RouteDecision(
        route=decision.route,
        confidence=decision.confidence,
        source=decision.source,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        upstream_calls=upstream_calls + decision.upstream_calls,
        note=decision.note or note,
    )
