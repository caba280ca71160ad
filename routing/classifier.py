"""The local router: a text classifier trained from the routes' example utterances.

scikit-learn does the learning (TF-IDF over word and character n-grams, a linear SVM,
probabilities calibrated by cross-validated sigmoid fitting, so that "0.8" means right
about four times in five). Prediction is done by hand from the fitted
parameters - a sparse dot product and a sigmoid - because sklearn's per-call input
validation costs more than the arithmetic for a single short text; a test checks both
paths agree.
"""

import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from routing.text import unconfused, visible

logger = logging.getLogger(__name__)

_NUMBERS = re.compile(r"\d+")


def normalise(text: str) -> str:
    """Lower-case, digits folded (bay 3 and bay 7 are the same request), spaces collapsed,
    what a keyboard does not show cleaned up as the rules do (routing/text.py): a soft hyphen
    in "fro\u00adzen" dropped, a Cyrillic "\u043e" in "fr\u043ezen" read as "o"."""
    return " ".join(_NUMBERS.sub("0", unconfused(visible(text).casefold())).split())


@dataclass(frozen=True, slots=True)
class Prediction:
    slug: str
    confidence: float
    runner_up: str | None
    runner_up_confidence: float


class TextClassifier:
    """A trained model: ``predict(text)`` gives the most likely slug and its probability.

    A text it was trained on (normalised, under one label only) gets that label with
    probability 1: an admin who re-labels a misrouted request expects that very text to go
    where they said, and a linear model trained on a thousand lines does not promise it.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        labels: Sequence[str],
        known: dict[str, str] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.labels = list(labels)
        self.known = known or {}

    def knows(self, text: str) -> bool:
        """Whether the text is one of the training examples (normalised)."""
        return normalise(text) in self.known

    def _known_proba(self, doc: str) -> dict[str, float] | None:
        label = self.known.get(doc)
        if label is None:
            return None
        return {slug: 1.0 if slug == label else 0.0 for slug in self.labels}

    @classmethod
    def train(cls, examples: Sequence[tuple[str, str]], *, seed: int = 0) -> "TextClassifier":
        # In an order fixed by the lines alone: the calibration's folds and the SVM's passes
        # follow it, and the same lines stored in another order (a database migrated step by
        # step, or fresh) must give the same model. Shuffled (seeded), so that each fold is
        # a fair sample of every route rather than a run of one data file or letter.
        ordered = sorted((normalise(t), label) for t, label in examples)
        random.Random(seed).shuffle(ordered)
        texts = [doc for doc, _ in ordered]
        labels = [label for _, label in ordered]
        features = FeatureUnion(
            [
                ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
                (
                    "chars",
                    TfidfVectorizer(
                        analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=1
                    ),
                ),
            ]
        )
        # The texts are vectorised once, and the calibration's folds share that vocabulary:
        # fitting the vectorisers again in each fold cost two thirds of a retrain (5.8 s ->
        # 2.0 s of CPU on 6,392 examples) and changed no route on the evaluation sets
        # (probabilities moved by up to 0.06; README, "Eighth pass").
        matrix = features.fit_transform(texts)
        # LinearSVC: as accurate as logistic regression here and ten times faster to train
        # (measured on routing/data: see the README), which matters at every retrain.
        folds = max(2, min(5, min(labels.count(label) for label in set(labels))))
        model = CalibratedClassifierCV(
            LinearSVC(C=1.0, random_state=seed), method="sigmoid", cv=folds, ensemble=False
        )
        model.fit(matrix, labels)
        seen: dict[str, set[str]] = {}
        for doc, label in zip(texts, labels, strict=True):
            seen.setdefault(doc, set()).add(label)
        known = {doc: next(iter(found)) for doc, found in seen.items() if len(found) == 1}
        return cls(Pipeline([("features", features), ("model", model)]), model.classes_, known)

    def predict_proba(self, text: str) -> dict[str, float]:
        doc = normalise(text)
        known = self._known_proba(doc)
        if known is not None:
            return known
        probs = self.pipeline.predict_proba([doc])[0]
        return dict(zip(self.labels, (float(p) for p in probs), strict=True))

    def predict(self, text: str) -> Prediction:
        probs = self.predict_proba(text)
        ranked = sorted(probs.items(), key=lambda kv: kv[1], reverse=True)
        best, runner = ranked[0], ranked[1] if len(ranked) > 1 else (None, 0.0)
        return Prediction(best[0], best[1], runner[0], runner[1])


class FastClassifier(TextClassifier):
    """The same model, predicting from its extracted parameters without sklearn's overhead.

    sklearn's ``transform`` spends ~0.5 ms per call validating and building a sparse
    matrix for one short text; the arithmetic itself is a few dozen dictionary lookups
    and one small matrix product. Same numbers, a tenth of the time.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        labels: Sequence[str],
        known: dict[str, str] | None = None,
    ) -> None:
        super().__init__(pipeline, labels, known)
        union, model = pipeline.steps[0][1], pipeline.steps[-1][1]
        calibrated = model.calibrated_classifiers_[0]
        linear = calibrated.estimator
        self._features: list[tuple[Callable[[str], list[int]], np.ndarray, int]] = []
        offset = 0
        for _, vectorizer in union.transformer_list:
            # TfidfVectorizer(sublinear_tf=True, norm="l2"): weight = (1 + ln tf) * idf.
            self._features.append((_feature_indices(vectorizer), vectorizer.idf_, offset))
            offset += len(vectorizer.vocabulary_)
        self._coef = np.ascontiguousarray(linear.coef_.T)  # (features, classes or 1)
        self._intercept = linear.intercept_.astype(float)
        # Sigmoid calibration: one (a, b) pair per class, p = 1 / (1 + exp(a*f + b)).
        self._calibrators = [(float(c.a_), float(c.b_)) for c in calibrated.calibrators]
        self._binary = len(self.labels) == 2

    def predict_proba(self, text: str) -> dict[str, float]:
        doc = normalise(text)
        known = self._known_proba(doc)
        if known is not None:
            return known
        scores = self._intercept.copy()
        for feature_indices, idf, offset in self._features:
            counts = Counter(feature_indices(doc))
            if not counts:
                continue
            indices = np.fromiter(counts, dtype=np.intp, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=float, count=len(counts))
            weights = (1.0 + np.log(tf)) * idf[indices]
            weights /= math.sqrt(float(weights @ weights))
            scores += weights @ self._coef[indices + offset]
        decision = scores.tolist()
        raw = [
            1.0 / (1.0 + math.exp(min(a * d + b, 700.0)))
            for (a, b), d in zip(self._calibrators, decision, strict=True)
        ]
        if self._binary:
            raw = [1.0 - raw[0], raw[0]]
        total = sum(raw) or 1.0
        return dict(zip(self.labels, (p / total for p in raw), strict=True))


# Bounds the per-word memo of a character-n-gram vectorizer; far above a venue's vocabulary.
_WORD_MEMO_MAX = 50_000


def _feature_indices(vectorizer: TfidfVectorizer) -> Callable[[str], list[int]]:
    """The vocabulary index of each of a text's n-grams that the vectorizer knows, repeats
    included (their count is the term frequency).

    Character n-grams within word boundaries (``char_wb``) are made word by word, so each
    word's are looked up once and remembered: a request's ~400 n-gram lookups, most of the
    prediction's time, become one per word. The n-grams are still sklearn's own.
    """
    vocabulary: dict[str, int] = vectorizer.vocabulary_

    def known(grams: list[str]) -> list[int]:
        return [i for gram in grams if (i := vocabulary.get(gram)) is not None]

    if vectorizer.analyzer != "char_wb" or vectorizer.preprocessor is not None:
        analyze = vectorizer.build_analyzer()
        return lambda doc: known(analyze(doc))
    preprocess = vectorizer.build_preprocessor()
    char_wb_ngrams = vectorizer._char_wb_ngrams
    memo: dict[str, list[int]] = {}

    def word_indices(word: str) -> list[int]:
        found = memo.get(word)
        if found is None:
            found = known(char_wb_ngrams(word))
            if len(memo) >= _WORD_MEMO_MAX:
                memo.clear()
            memo[word] = found
        return found

    def by_word(doc: str) -> list[int]:
        found: list[int] = []
        for word in preprocess(doc).split():
            found += word_indices(word)
        return found

    return by_word


# The fewest examples a route needs to be learned (one to train on, one to calibrate with).
MIN_EXAMPLES = 2


class LocalRouterModel:
    """The process's classifier, trained for each route catalog (by its fingerprint).

    The model of the catalog before the last is kept too: for a second after an admin's
    edit, requests still carry the catalog they read before it, and each is routed by the
    model of its own catalog instead of training the old one again.
    """

    KEEP = 2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, TextClassifier | None] = {}
        self.trained_at: float | None = None
        self.train_seconds: float | None = None

    def ready(self, fingerprint: str) -> bool:
        """Whether ``get`` returns at once: a model is trained for this catalog."""
        return fingerprint in self._models

    def get(self, fingerprint: str) -> TextClassifier | None:
        """The model for this catalog (None: fewer than two routes have examples), trained
        first if there is none yet (``ready`` says whether it must be)."""
        models = self._models
        if fingerprint in models:
            return models[fingerprint]
        with self._lock:
            # Requests that arrive during a training wait for its model rather than
            # training one each.
            if fingerprint not in self._models:
                self._retrain(fingerprint)
            return self._models[fingerprint]

    def _retrain(self, fingerprint: str) -> None:
        from routing.selectors import route_training_examples

        examples = route_training_examples()
        started = time.perf_counter()
        # Calibration holds out part of each route's examples: a route with a single one
        # cannot be learned (sklearn refuses the whole model). It is left out, to be reached
        # by its keywords or by hand, rather than every Auto request failing.
        counts = Counter(label for _, label in examples)
        too_few = sorted(label for label, n in counts.items() if n < MIN_EXAMPLES)
        if too_few:
            logger.warning("routes with fewer than %d examples left out: %s", MIN_EXAMPLES, too_few)
            examples = [(text, label) for text, label in examples if label not in too_few]
        model: TextClassifier | None = None
        if len(counts) - len(too_few) >= 2:
            trained = TextClassifier.train(examples)
            model = FastClassifier(trained.pipeline, trained.labels, trained.known)
        self.train_seconds = time.perf_counter() - started
        self.trained_at = time.time()
        models = {**self._models, fingerprint: model}
        while len(models) > self.KEEP:
            del models[next(iter(models))]
        self._models = models  # one assignment: readers on other threads see old or new
        logger.info(
            "local router trained on %d examples in %.2f s", len(examples), self.train_seconds
        )


local_router_model = LocalRouterModel()
