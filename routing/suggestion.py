"""A second opinion on a route the person chose by hand: "this looks like TechSupport".

A chosen route is never changed and costs no routing work of its own; this only asks the
process's trained local classifier (a sparse dot product, ~0.1 ms: ``evaluate_router
--strategy local``) whether it strongly prefers another enabled route. The console shows it
as a hint with a "switch?" button; the API carries it as ``suggested_route``.

Only a classifier that is already trained is asked (each worker trains it at start-up, and
again on the next Auto request after an admin edits the examples): a hint is never worth
seconds of training on a request the person routed themselves. No network, no model call.
"""

from routing.classifier import local_router_model
from routing.selectors import RouteCatalog, RouteSnapshot

SUGGEST_MIN_CONFIDENCE = 0.8
"""The classifier's probability for its top route above which a different hand-chosen route
gets a hint. On routing/data/eval.jsonl (242 requests never trained on): with every request
sent to its right route, no hint at 0.7 or above (1 false hint at 0.6); with each sent to
each wrong route (726 cases), 0.8 hints 72% of them and every hint names the right route
(0.9: 49%). 0.8 keeps a margin over the first false hint."""


def route_suggestion(
    *, text: str, chosen: RouteSnapshot, catalog: RouteCatalog
) -> RouteSnapshot | None:
    """The enabled route the classifier prefers with high confidence over ``chosen``, or
    None (it agrees, is unsure, or is not trained for this catalog yet)."""
    if not local_router_model.ready(catalog.fingerprint):
        return None
    model = local_router_model.get(catalog.fingerprint)
    if model is None:
        return None
    best_slug, best = "", 0.0
    for slug, probability in model.predict_proba(text).items():
        if probability > best:
            best_slug, best = slug, probability
    if best < SUGGEST_MIN_CONFIDENCE or best_slug == chosen.slug:
        return None
    route = catalog.get(best_slug)
    return route if route is not None and route.enabled else None
