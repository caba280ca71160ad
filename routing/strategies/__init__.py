"""Routing strategies by name: the ``routing_strategy`` of the system configuration."""

from routing.strategies.base import RouteDecision, RoutingError, RoutingStrategy
from routing.strategies.hybrid import HybridStrategy
from routing.strategies.llm import LLMStrategy
from routing.strategies.local import LocalStrategy
from routing.strategies.rules import RulesStrategy

STRATEGIES: dict[str, type[RoutingStrategy]] = {
    cls.name: cls for cls in (RulesStrategy, LocalStrategy, LLMStrategy, HybridStrategy)
}

__all__ = ["STRATEGIES", "RouteDecision", "RoutingError", "RoutingStrategy", "RulesStrategy"]
