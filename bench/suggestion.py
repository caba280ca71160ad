"""The hint for a hand-chosen route (``routing.suggestion``): its cost per request and how
often it is right, over a labelled file, for each threshold.

For every line of the file, the person is taken to have chosen (a) its right route: a hint
is then a false one; (b) each wrong route: a hint is then wanted, and should name the right
route. In-process on a throwaway SQLite database with the default routes, no network:

    .venv/bin/python bench/suggestion.py [routing/data/eval.jsonl]
"""

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THRESHOLDS = (0.6, 0.7, 0.8, 0.9, 0.95)


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "routing/data/eval.jsonl")
    workdir = tempfile.mkdtemp(prefix="clubos-suggestion-")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="clubos.settings",
        DJANGO_SECRET_KEY="bench-only",
        DATABASE_URL=f"sqlite:///{workdir}/db.sqlite3",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    from routing.classifier import local_router_model
    from routing.router import strategy_get
    from routing.selectors import route_catalog_get
    from routing.suggestion import SUGGEST_MIN_CONFIDENCE, route_suggestion

    call_command("migrate", verbosity=0)
    catalog = route_catalog_get()
    strategy_get("local").warm(catalog)  # as every worker does at start-up
    model = local_router_model.get(catalog.fingerprint)
    assert model is not None
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    slugs = [r.slug for r in catalog.enabled]

    # The cost on the request path: route_suggestion itself, for the chosen route.
    elapsed = []
    for line in lines:
        for chosen in slugs:
            started = time.perf_counter()
            route_suggestion(text=line["text"], chosen=catalog.by_slug[chosen], catalog=catalog)
            elapsed.append((time.perf_counter() - started) * 1000)
    elapsed.sort()
    print(
        f"route_suggestion per request: p50 {statistics.median(elapsed):.3f} ms, "
        f"p95 {elapsed[int(len(elapsed) * 0.95)]:.3f} ms ({len(elapsed)} calls)"
    )

    top = []
    for line in lines:
        probabilities = model.predict_proba(line["text"])
        best = max(probabilities, key=probabilities.__getitem__)
        top.append((line["route"], best, probabilities[best]))
    print(f"{len(lines)} requests from {path.name}; threshold in use: {SUGGEST_MIN_CONFIDENCE}")
    for threshold in THRESHOLDS:
        false_hints = sum(1 for right, best, p in top if p >= threshold and best != right)
        wrong_choices = sum(1 for right, _, _ in top for chosen in slugs if chosen != right)
        # A wrong choice equal to the classifier's own top route gets no hint.
        hinted_wrong = [
            (right, best)
            for right, best, p in top
            for chosen in slugs
            if chosen != right and p >= threshold and best != chosen
        ]
        good = sum(1 for right, best in hinted_wrong if best == right)
        print(
            f"  >= {threshold:.2f}: right route chosen -> false hints {false_hints}/{len(top)}; "
            f"wrong route chosen -> hinted {len(hinted_wrong)}/{wrong_choices} "
            f"({100 * len(hinted_wrong) / wrong_choices:.0f}%), naming the right route {good}"
        )


if __name__ == "__main__":
    main()
