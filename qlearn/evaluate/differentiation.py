"""Querier differentiation (not in the paper): does the reply depend on *who* asks?

For each test window we keep every word and change only the querier's speaker name, asking the
same dialogue as each of the responder's most frequent queriers. Two numbers:

* **reply change** — 100 minus the mean pairwise ROUGE-L between the replies to the different
  askers (0: the asker makes no difference at all), and the share of windows whose replies are
  not all identical;
* **asker recovery** — a classifier trained on the *real* training replies (MiniLM embeddings +
  logistic regression: "to whom was this reply addressed?") reads each generated reply and guesses
  the asker. Chance is 1/|askers|; a model that ignores the asker gives the same reply to everyone,
  so at most one asker per window can be right and it cannot beat chance.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Sequence

import numpy as np

from ..data.types import Turn
from .metrics import guess_lang, rouge_l_scores


def swap_querier(window, name: str):
    """The same window, with every querier turn relabelled ``name`` (texts unchanged)."""
    turns = [Turn(name if s == window.querier else s, t) for s, t in window.turns]
    return replace(window, turns=turns, querier=name, extra=dict(window.extra))


def top_askers(windows: Sequence, n: int = 4) -> list[str]:
    """The ``n`` queriers with most windows (ties broken by name, so the choice is reproducible)."""
    counts = Counter(w.querier for w in windows)
    return [q for q, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def replies_by_asker(model, tokenizer, windows: Sequence, askers: Sequence[str],
                     **generate_kwargs) -> dict[str, list[str]]:
    """``{asker: [reply to window 0 asked by asker, ...]}`` with the plain turn-template prompt."""
    from .baselines import model_replies

    swapped = [swap_querier(w, a) for a in askers for w in windows]
    flat = model_replies(model, tokenizer, swapped, **generate_kwargs)
    return {a: flat[i * len(windows):(i + 1) * len(windows)] for i, a in enumerate(askers)}


class AskerClassifier:
    """Which querier was a reply addressed to? Reply embeddings + logistic regression.

    ``embedder=None``: the one that fits the language (``qlearn.cluster.fit_embedder``): MiniLM for
    English, character n-grams fitted on the training replies for Chinese.
    """

    def __init__(self, embedder=None, C: float = 1.0):
        self.embedder, self.C = embedder, C

    def _embed(self, texts):
        return np.asarray(self.embedder.encode(list(texts), batch_size=64, normalize_embeddings=True,
                                               show_progress_bar=False))

    def fit(self, windows: Sequence, askers: Sequence[str]) -> "AskerClassifier":
        from sklearn.linear_model import LogisticRegression

        from ..cluster import fit_embedder

        train = [w for w in windows if w.querier in set(askers)]
        missing = set(askers) - {w.querier for w in train}
        if missing:
            raise ValueError(f"no training replies addressed to {sorted(missing)}: choose askers "
                             "that occur in the training split")
        self.embedder = fit_embedder([w.reply for w in train], self.embedder)
        self.clf_ = LogisticRegression(C=self.C, max_iter=2000, class_weight="balanced")
        self.clf_.fit(self._embed(w.reply for w in train), [w.querier for w in train])
        self.classes_ = list(self.clf_.classes_)
        return self

    def predict(self, replies: Sequence[str]) -> list[str]:
        return list(self.clf_.predict(self._embed(r or " " for r in replies)))


@dataclass
class Differentiation:
    askers: list[str]
    n_windows: int
    reply_change: float  # 100 - mean pairwise ROUGE-L between askers' replies
    distinct_windows: float  # % of windows whose replies are not all identical
    recovery: float  # % of (window, asker) where the classifier names the asker
    chance: float  # 100 / len(askers)
    replies: dict = field(default_factory=dict, repr=False)

    def row(self) -> dict:
        return {"askers": len(self.askers), "windows": self.n_windows,
                "reply_change": self.reply_change, "distinct_windows": self.distinct_windows,
                "asker_recovery": self.recovery, "chance": self.chance}


def score_differentiation(replies: dict[str, list[str]], classifier: AskerClassifier,
                          lang: str | None = None) -> Differentiation:
    """Both numbers from ``{asker: replies}`` (every list covers the same windows in order)."""
    askers = list(replies)
    n = len(replies[askers[0]])
    if len(askers) < 2 or any(len(v) != n for v in replies.values()):
        raise ValueError("need replies from at least two askers, one per window each")
    lang = lang or guess_lang(r for v in replies.values() for r in v)
    sims = []  # identical replies (empty ones included) are 100% similar
    for a, b in combinations(askers, 2):
        scores = rouge_l_scores(replies[a], replies[b], lang)
        sims += [100.0 if x == y else s for x, y, s in zip(replies[a], replies[b], scores)]
    change = 100 - float(np.mean(sims))
    distinct = 100 * np.mean([len({replies[a][i] for a in askers}) > 1 for i in range(n)])
    hits = [p == a for a in askers for p in classifier.predict(replies[a])]
    return Differentiation(askers, n, change, float(distinct), 100 * float(np.mean(hits)),
                           100 / len(askers), replies)


def differentiation(model, tokenizer, dataset, n_windows: int = 30, n_askers: int = 4,
                    embedder=None, classifier: AskerClassifier | None = None,
                    **generate_kwargs) -> Differentiation:
    """Ask ``n_windows`` test windows as each of the ``n_askers`` most frequent queriers (training
    frequency); windows whose real querier is one of them come first."""
    askers = top_askers(dataset.train, n_askers)
    # windows first asked by one of the askers, then any other test window
    windows = sorted(dataset.test, key=lambda w: w.querier not in askers)[:n_windows]
    if not windows:
        raise ValueError("differentiation needs test windows: dataset.test is empty")
    classifier = classifier or AskerClassifier(embedder).fit(dataset.train, askers)
    return score_differentiation(replies_by_asker(model, tokenizer, windows, askers,
                                                  **generate_kwargs), classifier)
