"""Turning a request's text (or the person's choice) into a ``RouteDecision``."""

import logging
import threading
import time

from config.selectors import ConfigSnapshot
from config.threads import in_thread
from routing.selectors import RouteCatalog, RouteSnapshot
from routing.strategies import STRATEGIES, RouteDecision, RoutingError, RoutingStrategy

logger = logging.getLogger(__name__)

AUTO = "auto"
# A request's rules and classifier cost ~0.3 ms per 250 characters, more for a paste of many
# short sentences (each is scored for a buried emergency): up to ~20 ms at the 4,000-character
# limit, which would stall every stream the event loop serves. Above this length the same
# decision is made in a thread (README, "Routing safety").
ROUTE_ON_LOOP_MAX_CHARS = 1000

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


async def route_decide(
    *, text: str, requested: str, catalog: RouteCatalog, config: ConfigSnapshot
) -> RouteDecision:
    """Decide the route. A chosen route costs nothing; 'auto' runs the configured strategy.

    On the event loop, as every strategy's ``adecide``: the rules and the classifier
    compute there, the LLM router waits in a thread, and a decision whose classifier must
    train first (start-up, an admin's edit of the examples) or whose text is longer than
    ``ROUTE_ON_LOOP_MAX_CHARS`` is made in a thread.

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
        strategy = strategy_get(name)
        try:
            if strategy.ready(catalog) and len(text) <= ROUTE_ON_LOOP_MAX_CHARS:
                decision = await strategy.adecide(text, catalog=catalog, config=config)
            else:
                # It must train first (start-up, an admin's edit: seconds of work), or the
                # text is long: this decision is made in a thread.
                decision = await in_thread(strategy.decide, text, catalog=catalog, config=config)
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
        possible_emergency=decision.possible_emergency,
    )
