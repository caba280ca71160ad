"""What a routing strategy is: text in, a decision (or "can't tell") out."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from config.selectors import ConfigSnapshot
from config.threads import in_thread
from routing.selectors import RouteCatalog, RouteSnapshot


@dataclass(frozen=True, slots=True)
class RouteDecision:
    route: RouteSnapshot
    confidence: float
    source: str  # a requestlogs RoutingSource value: manual, rules, local, llm, default
    elapsed_ms: float = 0.0
    upstream_calls: int = 0
    note: str = ""
    # Hybrid routing doubted this non-emergency decision: the person is offered a one-tap
    # switch to Emergency (config EmergencyPolicy).
    possible_emergency: bool = False


class RoutingError(Exception):
    """A strategy could not run (the LLM router's upstream failed, say)."""

    def __init__(self, message: str, *, upstream_calls: int = 0) -> None:
        super().__init__(message)
        self.upstream_calls = upstream_calls


class RoutingStrategy(ABC):
    """Decide which enabled route a request's text belongs to.

    ``decide`` returns None when the strategy has no opinion (no rule matched), and
    raises ``RoutingError`` when it could not work at all. It never calls an assistant.
    Instances live for the whole process; anything they precompute from the catalog
    must be keyed by ``catalog.fingerprint``.

    ``adecide`` is the same decision on an event loop (the request's pipeline). A strategy
    that only computes (``waits = False``) decides there at once; one that waits on the
    network decides in a thread, unless it overrides ``adecide``.
    """

    name: ClassVar[str]
    waits: ClassVar[bool] = False

    def warm(self, catalog: RouteCatalog) -> None:  # noqa: B027  (optional hook)
        """Build whatever ``decide`` precomputes, so the first request does not pay for it."""

    def ready(self, catalog: RouteCatalog) -> bool:
        """Whether ``decide`` runs without a long build first (training a model, say)."""
        return True

    @abstractmethod
    def decide(
        self, text: str, *, catalog: RouteCatalog, config: ConfigSnapshot
    ) -> RouteDecision | None: ...

    async def adecide(
        self, text: str, *, catalog: RouteCatalog, config: ConfigSnapshot
    ) -> RouteDecision | None:
        if self.waits:
            return await in_thread(self.decide, text, catalog=catalog, config=config)
        return self.decide(text, catalog=catalog, config=config)
