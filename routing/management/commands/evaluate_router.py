"""Measure a routing strategy on a labelled JSONL file: accuracy, per-route precision and
recall, the confusion matrix and per-request latency."""

import asyncio
import dataclasses
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.selectors import ConfigSnapshot, system_config_get
from routing.router import route_decide, strategy_get
from routing.selectors import RouteCatalog, route_catalog_get
from routing.strategies import STRATEGIES


def load_examples(path: Path) -> list[tuple[str, str]]:
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            examples.append((str(item["text"]), str(item["route"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"{path}:{number}: expected {{'text', 'route'}}: {exc}") from exc
    if not examples:
        raise CommandError(f"{path} has no examples")
    return examples


class Command(BaseCommand):
    help = "Evaluate a routing strategy on a JSONL file of {'text', 'route'} lines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--strategy", choices=sorted(STRATEGIES), help="default: the configured strategy"
        )
        parser.add_argument("--json", action="store_true", help="end with one JSON line")
        parser.add_argument("--show-errors", action="store_true", help="list the misrouted lines")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.exists():
            raise CommandError(f"no such file: {path}")
        examples = load_examples(path)
        config = system_config_get()
        if options["strategy"]:
            config = dataclasses.replace(config, routing_strategy=options["strategy"])
        catalog = route_catalog_get()
        unknown = {label for _, label in examples} - set(catalog.by_slug)
        if unknown:
            raise CommandError(f"labels that are not routes: {', '.join(sorted(unknown))}")

        # Training the local model is start-up cost, not routing latency.
        strategy_get(config.routing_strategy).warm(catalog)

        latencies, results, unsure = asyncio.run(self._decide_all(examples, catalog, config))
        report = self._report(results, latencies, unsure, config.routing_strategy)
        self._print(report, results, show_errors=options["show_errors"])
        if options["json"]:
            self.stdout.write(json.dumps(report, separators=(",", ":")))

    @staticmethod
    async def _decide_all(
        examples: list[tuple[str, str]], catalog: RouteCatalog, config: ConfigSnapshot
    ) -> tuple[list[float], list[tuple[str, str, str, float, str]], int]:
        """Every example through the request path's own routing, one after another, timed."""
        latencies: list[float] = []
        results: list[tuple[str, str, str, float, str]] = []
        unsure = 0
        for text, expected in examples:
            started = time.perf_counter()
            decision = await route_decide(
                text=text, requested="auto", catalog=catalog, config=config
            )
            latencies.append((time.perf_counter() - started) * 1000)
            if decision.source == "llm" or (
                decision.source in {"local", "default"}
                and decision.confidence < config.confidence_threshold
            ):
                unsure += 1
            results.append(
                (text, expected, decision.route.slug, decision.confidence, decision.source)
            )
        return latencies, results, unsure

    def _report(
        self,
        results: list[tuple[str, str, str, float, str]],
        latencies: list[float],
        unsure: int,
        strategy: str,
    ) -> dict[str, Any]:
        labels = sorted({r[1] for r in results} | {r[2] for r in results})
        n = len(results)
        correct = sum(1 for r in results if r[1] == r[2])
        per_route = {}
        for label in labels:
            tp = sum(1 for r in results if r[1] == label and r[2] == label)
            predicted = sum(1 for r in results if r[2] == label)
            actual = sum(1 for r in results if r[1] == label)
            per_route[label] = {
                "precision": round(tp / predicted, 4) if predicted else None,
                "recall": round(tp / actual, 4) if actual else None,
                "support": actual,
            }
        confusion = {a: dict.fromkeys(labels, 0) for a in labels}
        for result in results:
            confusion[result[1]][result[2]] += 1
        return {
            "strategy": strategy,
            "n": n,
            "accuracy": round(correct / n, 4),
            # numpy's default (linear) is PostgreSQL's percentile_cont, as in the stats API.
            "p50_ms": round(float(np.percentile(latencies, 50)), 4),
            "p95_ms": round(float(np.percentile(latencies, 95)), 4),
            "mean_ms": round(statistics.fmean(latencies), 4),
            "unsure_share": round(unsure / n, 4),
            "sources": dict(Counter(r[4] for r in results)),
            "per_route": per_route,
            "confusion": confusion,
        }

    def _print(
        self,
        report: dict[str, Any],
        results: list[tuple[str, str, str, float, str]],
        *,
        show_errors: bool,
    ) -> None:
        w = self.stdout.write
        w(f"strategy: {report['strategy']}   examples: {report['n']}")
        w(f"accuracy: {report['accuracy']:.2%}")
        w(
            f"latency per request: p50 {report['p50_ms']:.3f} ms, p95 {report['p95_ms']:.3f} ms, "
            f"mean {report['mean_ms']:.3f} ms"
        )
        w(
            f"unsure (below the confidence threshold: the LLM would be asked): "
            f"{report['unsure_share']:.1%}   decided by: {report['sources']}"
        )
        w("")
        w(f"{'route':<12}{'precision':>10}{'recall':>9}{'support':>9}")
        for label, m in report["per_route"].items():
            p = "-" if m["precision"] is None else f"{m['precision']:.2%}"
            r = "-" if m["recall"] is None else f"{m['recall']:.2%}"
            w(f"{label:<12}{p:>10}{r:>9}{m['support']:>9}")
        w("")
        labels = list(report["confusion"])
        w("confusion (rows: expected, columns: routed)")
        w(" " * 12 + "".join(f"{label[:10]:>11}" for label in labels))
        for actual in labels:
            row = report["confusion"][actual]
            w(f"{actual:<12}" + "".join(f"{row[p]:>11}" for p in labels))
        if show_errors:
            w("")
            w("misrouted:")
            for text, expected, got, confidence, source in results:
                if expected != got:
                    w(f"  {expected:>9} -> {got:<9} {confidence:.2f} {source:<7} {text}")
