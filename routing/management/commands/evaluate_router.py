"""Measure a routing strategy on a labelled JSONL file: accuracy, per-route precision and
recall, the confusion matrix, per-request latency, and the safety figures: emergency
recall, false emergencies, how often the LLM is asked and how often a request is flagged
as a possible emergency, per category when the lines carry a "category"."""

import asyncio
import dataclasses
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.models import EmergencyPolicy
from config.selectors import ConfigSnapshot, system_config_get
from routing.router import route_decide, strategy_get
from routing.selectors import RouteCatalog, route_catalog_get
from routing.strategies import STRATEGIES, RouteDecision


def load_examples(path: Path) -> list[tuple[str, str]]:
    return [(text, route) for text, route, _ in load_labelled(path)]


def load_labelled(path: Path) -> list[tuple[str, str, str]]:
    """(text, route, category) per line; the category is "" when the line has none."""
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            examples.append(
                (str(item["text"]), str(item["route"]), str(item.get("category") or ""))
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CommandError(f"{path}:{number}: expected {{'text', 'route'}}: {exc}") from exc
    if not examples:
        raise CommandError(f"{path} has no examples")
    return examples


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    text: str
    expected: str
    got: str
    confidence: float
    source: str
    category: str
    possible_emergency: bool
    llm_asked: bool


class Command(BaseCommand):
    help = "Evaluate a routing strategy on a JSONL file of {'text', 'route'} lines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--strategy", choices=sorted(STRATEGIES), help="default: the configured strategy"
        )
        parser.add_argument("--json", action="store_true", help="end with one JSON line")
        parser.add_argument("--show-errors", action="store_true", help="list the misrouted lines")
        parser.add_argument(
            "--policy",
            choices=[choice.value for choice in EmergencyPolicy],
            help="hybrid's emergency policy (default: the configured one)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.exists():
            raise CommandError(f"no such file: {path}")
        examples = load_labelled(path)
        config = system_config_get()
        if options["strategy"]:
            config = dataclasses.replace(config, routing_strategy=options["strategy"])
        if options["policy"]:
            config = dataclasses.replace(config, emergency_policy=options["policy"])
        catalog = route_catalog_get()
        unknown = {label for _, label, _ in examples} - set(catalog.by_slug)
        if unknown:
            raise CommandError(f"labels that are not routes: {', '.join(sorted(unknown))}")

        # Training the local model is start-up cost, not routing latency.
        strategy_get(config.routing_strategy).warm(catalog)

        latencies, results = asyncio.run(self._decide_all(examples, catalog, config))
        report = self._report(results, latencies, config, catalog)
        self._print(report, results, show_errors=options["show_errors"])
        if options["json"]:
            self.stdout.write(json.dumps(report, separators=(",", ":")))

    @staticmethod
    async def _decide_all(
        examples: list[tuple[str, str, str]], catalog: RouteCatalog, config: ConfigSnapshot
    ) -> tuple[list[float], list[Result]]:
        """Every example through the request path's own routing, one after another, timed.

        ``llm_asked``: the LLM router was asked, or would be with an upstream configured
        (an unsure decision, or a doubted one under the "ask the LLM" policy)."""
        latencies: list[float] = []
        results: list[Result] = []
        for text, expected, category in examples:
            started = time.perf_counter()
            decision = await route_decide(
                text=text, requested="auto", catalog=catalog, config=config
            )
            latencies.append((time.perf_counter() - started) * 1000)
            llm_asked = _asks_llm(decision, config)
            results.append(
                Result(
                    text=text,
                    expected=expected,
                    got=decision.route.slug,
                    confidence=decision.confidence,
                    source=decision.source,
                    category=category,
                    possible_emergency=decision.possible_emergency,
                    llm_asked=llm_asked,
                )
            )
        return latencies, results

    def _report(
        self,
        results: list[Result],
        latencies: list[float],
        config: ConfigSnapshot,
        catalog: RouteCatalog,
    ) -> dict[str, Any]:
        labels = sorted({r.expected for r in results} | {r.got for r in results})
        n = len(results)
        correct = sum(1 for r in results if r.expected == r.got)
        per_route = {}
        for label in labels:
            tp = sum(1 for r in results if r.expected == label and r.got == label)
            predicted = sum(1 for r in results if r.got == label)
            actual = sum(1 for r in results if r.expected == label)
            per_route[label] = {
                "precision": round(tp / predicted, 4) if predicted else None,
                "recall": round(tp / actual, 4) if actual else None,
                "support": actual,
            }
        confusion = {a: dict.fromkeys(labels, 0) for a in labels}
        for result in results:
            confusion[result.expected][result.got] += 1
        emergency = {r.slug for r in catalog.routes if r.is_emergency}
        categories = sorted({r.category for r in results if r.category})
        return {
            "strategy": config.routing_strategy,
            "emergency_policy": config.emergency_policy,
            "n": n,
            "accuracy": round(correct / n, 4),
            # As if every request the LLM is (or would be) asked about were then routed right.
            "accuracy_if_llm_right": _share(results, lambda r: r.expected == r.got or r.llm_asked),
            # numpy's default (linear) is PostgreSQL's percentile_cont, as in the stats API.
            "p50_ms": round(float(np.percentile(latencies, 50)), 4),
            "p95_ms": round(float(np.percentile(latencies, 95)), 4),
            "mean_ms": round(statistics.fmean(latencies), 4),
            "unsure_share": round(sum(r.llm_asked for r in results) / n, 4),
            "llm_share": round(sum(r.llm_asked for r in results) / n, 4),
            "possible_emergency_share": round(sum(r.possible_emergency for r in results) / n, 4),
            **_safety(results, emergency),
            "sources": dict(Counter(r.source for r in results)),
            "per_route": per_route,
            "per_category": {
                c: {
                    "n": sum(1 for r in results if r.category == c),
                    "accuracy": _share(
                        [r for r in results if r.category == c], lambda r: r.expected == r.got
                    ),
                    **_safety([r for r in results if r.category == c], emergency),
                }
                for c in categories
            },
            "confusion": confusion,
        }

    def _print(
        self,
        report: dict[str, Any],
        results: list[Result],
        *,
        show_errors: bool,
    ) -> None:
        w = self.stdout.write
        w(
            f"strategy: {report['strategy']}   emergency policy: {report['emergency_policy']}"
            f"   examples: {report['n']}"
        )
        w(
            f"accuracy: {report['accuracy']:.2%}   (counting a request the LLM is asked "
            f"about as right: {_pct(report['accuracy_if_llm_right'])})"
        )
        w(
            f"latency per request: p50 {report['p50_ms']:.3f} ms, p95 {report['p95_ms']:.3f} ms, "
            f"mean {report['mean_ms']:.3f} ms"
        )
        w(
            f"LLM asked (unsure, or doubted under the 'llm' policy; asked when one is "
            f"configured): {report['llm_share']:.1%}   decided by: {report['sources']}"
        )
        w(
            f"emergency recall: {_pct(report['emergency_recall'])}   false emergencies: "
            f"{_pct(report['false_emergencies'])} of non-emergencies "
            f"({report['false_emergency_count']})   flagged possible emergency: "
            f"{report['possible_emergency_share']:.1%}"
        )
        w(
            f"emergency recall counting a flagged request (one tap away): "
            f"{_pct(report['emergency_recall_with_switch'])}; counting a request the LLM is "
            f"asked about as right (assumes the LLM answers correctly): "
            f"{_pct(report['emergency_recall_if_llm_right'])}"
        )
        w("")
        w(f"{'route':<12}{'precision':>10}{'recall':>9}{'support':>9}")
        for label, m in report["per_route"].items():
            p = "-" if m["precision"] is None else f"{m['precision']:.2%}"
            r = "-" if m["recall"] is None else f"{m['recall']:.2%}"
            w(f"{label:<12}{p:>10}{r:>9}{m['support']:>9}")
        if report["per_category"]:
            w("")
            w(f"{'category':<28}{'n':>5}{'accuracy':>10}{'em. recall':>12}{'false em.':>11}")
            for category, m in report["per_category"].items():
                w(
                    f"{category[:27]:<28}{m['n']:>5}{_pct(m['accuracy']):>10}"
                    f"{_pct(m['emergency_recall']):>12}{m['false_emergency_count']:>11}"
                )
        w("")
        labels = list(report["confusion"])
        w("confusion (rows: expected, columns: routed)")
        w(" " * 12 + "".join(f"{label[:10]:>11}" for label in labels))
        for actual in labels:
            row = report["confusion"][actual]
            w(f"{actual:<12}" + "".join(f"{row[p]:>11}" for p in labels))
        if show_errors:
            w("")
            w("misrouted (! = flagged possible emergency, ? = the LLM would be asked):")
            for res in results:
                if res.expected != res.got:
                    mark = ("!" if res.possible_emergency else " ") + (
                        "?" if res.llm_asked else " "
                    )
                    category = f" [{res.category}]" if res.category else ""
                    w(
                        f"  {res.expected:>9} -> {res.got:<9} {res.confidence:.2f} "
                        f"{res.source:<7}{mark} {res.text}{category}"
                    )


def _asks_llm(decision: RouteDecision, config: ConfigSnapshot) -> bool:
    """Whether the LLM router was asked, or would be with an upstream configured."""
    if decision.source == "llm":
        return True
    if decision.source not in {"local", "default"}:
        return False
    if decision.possible_emergency:
        # Doubted: under "switch" the person decides with the one-tap switch.
        return config.emergency_policy == EmergencyPolicy.ASK_LLM
    return decision.confidence < config.confidence_threshold


def _share(results: list[Result], hit: Callable[[Result], bool]) -> float | None:
    return round(sum(1 for r in results if hit(r)) / len(results), 4) if results else None


def _safety(results: list[Result], emergency: set[str]) -> dict[str, Any]:
    """Emergency recall (with and without the one-tap switch, and assuming the LLM is right
    when asked) and false emergencies, as shares of the emergencies / non-emergencies."""
    actual = [r for r in results if r.expected in emergency]
    others = [r for r in results if r.expected not in emergency]
    false = [r for r in others if r.got in emergency]
    return {
        "emergency_recall": _share(actual, lambda r: r.got in emergency),
        "emergency_recall_with_switch": _share(
            actual, lambda r: r.got in emergency or r.possible_emergency
        ),
        "emergency_recall_if_llm_right": _share(
            actual, lambda r: r.got in emergency or r.llm_asked
        ),
        "false_emergencies": round(len(false) / len(others), 4) if others else None,
        "false_emergency_count": len(false),
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
