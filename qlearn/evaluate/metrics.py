"""Reply metrics: ROUGE-L, BLEU, distinct-n, bootstrap confidence intervals, paired tests.

Every corpus score is ×100, like the paper's tables.

* ``rouge_l(..., variant="rouge-score")`` — Google's ``rouge-score`` (textbook sentence-level LCS,
  lower-cased, punctuation removed) with a tokenizer that keeps CJK characters as one token each.
  rouge-score's default tokenizer deletes every non-ASCII character, so Chinese would score 0.
* ``rouge_l(..., variant="paper")`` — the official metric: PyPI ``rouge`` 1.0.x
  ``Rouge().get_scores(pred, ref)``, Chinese written as characters separated by spaces. That
  library splits sentences on ".", tokens on spaces, is case-sensitive, keeps punctuation glued to
  words and computes a *set-based* summary-level union LCS. A pair it cannot score (an empty
  prediction) counts as 0 and still counts in the mean, as in the official script.
* ``bleu`` — nltk ``corpus_bleu`` without smoothing, BLEU-n (n = 1..4) with uniform weights 1/n.
  Tokens: English split on spaces, Chinese segmented into words with jieba (both as the official
  script; ``zh_tokens="chars"`` gives one token per character instead). ``stopwords=`` removes
  tokens first: a file (one word per line; the official script used the HIT Chinese list,
  ``hit_stopwords.txt``, not shipped here: pass its path), any collection of words, or
  ``"builtin"`` — for English scikit-learn's ``ENGLISH_STOP_WORDS`` (the Glasgow Information
  Retrieval Group list; nltk's corpus needs a download), for Chinese :data:`ZH_STOPWORDS` (common
  function words, a short list written for qlearn, not the HIT list). English tokens are matched
  lower-cased without surrounding punctuation.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

# CJK ideographs, kana, hangul, fullwidth forms: one token per character.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_MIXED_TOKEN = re.compile(f"[{_CJK}]|[a-z0-9]+")
LANGS = ("en", "zh")
# Chinese function words (pronouns, particles, auxiliaries, conjunctions, common adverbs), written
# for qlearn's "builtin" BLEU stop words; the official script used the longer HIT list instead.
ZH_STOPWORDS = frozenset("""
的 了 着 过 是 在 有 和 与 及 或 而 但 就 都 也 还 又 才 很 太 更 最 不 没 没有 别 吗 呢 吧 啊 呀 哦 嗯 哎
嘛 啦 么 之 其 此 这 那 这个 那个 这些 那些 这儿 那儿 这里 那里 我 你 您 他 她 它 我们 你们 他们 她们
咱 咱们 自己 人家 大家 一 个 把 被 让 给 对 从 向 往 到 为 为了 以 于 比 跟 同 上 下 里 中 地 得 所 等
""".split())


def _check(predictions: Sequence[str], references: Sequence[str], lang: str) -> None:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("pass lists of strings (one prediction and one reference per window), "
                        "not a single string")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references: "
                         "give exactly one prediction per reference, in the same order")
    if not predictions:
        raise ValueError("no predictions to score: the list of windows is empty")
    if lang not in LANGS:
        raise ValueError(f"unknown lang {lang!r}: use 'en' or 'zh'")


def guess_lang(texts: Iterable[str]) -> str:
    """'zh' when at least a quarter of the non-space characters are CJK, else 'en'."""
    text = "".join(texts)
    chars = len(re.sub(r"\s", "", text))
    return "zh" if chars and len(_CJK_CHAR.findall(text)) / chars >= 0.25 else "en"


class CharTokenizer:
    """rouge-score's tokenizer, except that each CJK character is a token of its own.

    Lower-cases, keeps runs of ``[a-z0-9]`` as words (exactly rouge-score's default for English)
    and splits Chinese into characters; punctuation is dropped.
    """

    def tokenize(self, text: str) -> list[str]:
        return _MIXED_TOKEN.findall(text.lower())


# ---------------------------------------------------------------- ROUGE-L
def rouge_l_scores(predictions: Sequence[str], references: Sequence[str], lang: str = "en",
                   variant: str = "rouge-score") -> list[float]:
    """Per-window ROUGE-L F ×100 (see the module doc for the two variants)."""
    _check(predictions, references, lang)
    if variant == "rouge-score":
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=CharTokenizer())
        return [100 * scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
    if variant == "paper":
        from rouge import Rouge

        rouge = Rouge(metrics=["rouge-l"], stats=["f"])
        out = []
        for p, r in zip(predictions, references):
            if lang == "zh":
                p, r = " ".join(p), " ".join(r)
            try:
                out.append(100 * rouge.get_scores(p, r)[0]["rouge-l"]["f"])
            except (ValueError, RecursionError):  # empty side (or absurdly long): 0, still counted
                out.append(0.0)
        return out
    raise ValueError(f"unknown ROUGE-L variant {variant!r}: use 'rouge-score' or 'paper'")


def rouge_l(predictions: Sequence[str], references: Sequence[str], lang: str = "en",
            variant: str = "rouge-score") -> float:
    """Corpus ROUGE-L: the mean per-window F ×100."""
    return float(np.mean(rouge_l_scores(predictions, references, lang, variant)))


# ---------------------------------------------------------------- BLEU, distinct-n
def load_stopwords(path: str | Path) -> set[str]:
    """One word per line (e.g. the HIT list the official script used); blank lines ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"stop-word file {path} not found: pass a text file with one word "
                                "per line (the official list is hit_stopwords.txt)")
    return {w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()}


def tokens(text: str, lang: str = "en") -> list[str]:
    """Distinct-n tokens: English split on whitespace, Chinese one per non-space character."""
    if lang == "zh":
        return [c for c in text if not c.isspace()]
    return text.split()


def zh_words(text: str) -> list[str]:
    """Chinese words by jieba (its default dictionary and mode, as the official script), no spaces."""
    try:
        import jieba
    except ImportError as e:  # a dependency of qlearn; named if an environment lacks it
        raise ImportError("Chinese BLEU on words needs jieba: pip install jieba (or pass "
                          "zh_tokens='chars')") from e
    import logging

    jieba.setLogLevel(logging.WARNING)
    return [w for w in jieba.lcut(text) if w.strip()]


def bleu_tokens(text: str, lang: str = "en", zh_tokens: str = "words") -> list[str]:
    """BLEU tokens: English split on whitespace; Chinese jieba words (or characters)."""
    if lang == "zh":
        if zh_tokens == "words":
            return zh_words(text)
        if zh_tokens == "chars":
            return tokens(text, "zh")
        raise ValueError(f"zh_tokens={zh_tokens!r}: use 'words' (jieba, official) or 'chars'")
    return text.split()


_EDGE_PUNCT = re.compile(r"^[^\w]+|[^\w]+$")


def stopword_set(stopwords, lang: str = "en") -> set[str]:
    """``None`` → empty; ``"builtin"`` → the language's list (module doc); a path → its lines;
    else the given words."""
    if stopwords is None:
        return set()
    if isinstance(stopwords, str) and stopwords == "builtin":
        if lang == "zh":
            return set(ZH_STOPWORDS)
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        return set(ENGLISH_STOP_WORDS)
    if isinstance(stopwords, (str, Path)):
        return load_stopwords(stopwords)
    return set(stopwords)


def _drop_stopwords(toks: list[str], stop: set[str], lang: str) -> list[str]:
    if not stop:
        return toks
    if lang == "zh":
        return [t for t in toks if t not in stop]
    return [t for t in toks if _EDGE_PUNCT.sub("", t.lower()) not in stop]


def bleu(predictions: Sequence[str], references: Sequence[str], lang: str = "en", n: int = 4,
         stopwords: str | Path | Iterable[str] | None = None, zh_tokens: str = "words") -> float:
    """Corpus BLEU-n ×100 with nltk (``corpus_bleu``, weights 1/n, no smoothing); ``stopwords``
    and ``zh_tokens`` as in the module doc."""
    from nltk.translate.bleu_score import corpus_bleu

    _check(predictions, references, lang)
    if n not in (1, 2, 3, 4):
        raise ValueError(f"BLEU order n={n}: use 1, 2, 3 or 4")
    stop = stopword_set(stopwords, lang)
    hyp = [_drop_stopwords(bleu_tokens(p, lang, zh_tokens), stop, lang) for p in predictions]
    ref = [[_drop_stopwords(bleu_tokens(r, lang, zh_tokens), stop, lang)] for r in references]
    import warnings

    with warnings.catch_warnings():  # nltk warns when a higher-order n-gram never matches (-> 0)
        warnings.simplefilter("ignore")
        return 100 * float(corpus_bleu(ref, hyp, weights=(1 / n,) * n))


def distinct_n(predictions: Sequence[str], n: int = 1, lang: str = "en") -> float:
    """Distinct-n ×100: unique n-grams / all n-grams over the predictions (0 if none)."""
    grams = [tuple(t[i:i + n]) for p in predictions for t in [tokens(p, lang)]
             for i in range(len(t) - n + 1)]
    return 100 * len(set(grams)) / len(grams) if grams else 0.0


# ---------------------------------------------------------------- uncertainty
@dataclass(frozen=True)
class CI:
    mean: float
    low: float
    high: float

    def __str__(self):
        return f"{self.mean:.2f} [{self.low:.2f}, {self.high:.2f}]"


def bootstrap_ci(scores: Sequence[float], n_resamples: int = 2000, confidence: float = 0.95,
                 seed: int = 0, statistic: Callable = np.mean) -> CI:
    """Percentile bootstrap CI of ``statistic`` over per-window scores (windows resampled)."""
    # not scipy.stats.bootstrap: the same percentile interval, but another resampling stream, and
    # every committed table's CIs were drawn with this one (switching would move all of them)
    x = np.asarray(scores, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one score")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    stats = np.array([statistic(x[i]) for i in idx])
    a = (1 - confidence) / 2
    return CI(float(statistic(x)), float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a)))


@dataclass(frozen=True)
class PairedResult:
    diff: float  # mean(a) - mean(b)
    ci: CI  # bootstrap CI of the difference
    p_value: float  # two-sided paired permutation (sign-flip) test

    def __str__(self):
        return f"diff {self.ci} (p={self.p_value:.3g})"


def paired_test(scores_a: Sequence[float], scores_b: Sequence[float], n_resamples: int = 10000,
                seed: int = 0) -> PairedResult:
    """Compare two systems scored on the same windows: bootstrap CI and sign-flip p-value."""
    # not scipy.stats.permutation_test: the same sign-flip test, kept so that the committed p-values
    # stay reproducible to the digit (its random stream differs)
    a, b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired_test needs per-window scores of the same windows, got "
                         f"{a.size} and {b.size}")
    d = a - b
    ci = bootstrap_ci(d, n_resamples=min(n_resamples, 5000), seed=seed)
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_resamples, d.size))
    null = np.abs((signs * d).mean(axis=1))
    p = (1 + np.sum(null >= abs(d.mean()) - 1e-12)) / (n_resamples + 1)
    return PairedResult(float(d.mean()), ci, float(min(1.0, p)))


def score_all(predictions: Sequence[str], references: Sequence[str], lang: str = "en",
              stopwords=None, seed: int = 0) -> dict:
    """The metric row every table uses: ROUGE-L (both variants, with CIs), BLEU-1..4, Distinct-1/2."""
    rl = rouge_l_scores(predictions, references, lang)
    rp = rouge_l_scores(predictions, references, lang, variant="paper")
    ci, cp = bootstrap_ci(rl, seed=seed), bootstrap_ci(rp, seed=seed)
    row = {"n": len(predictions), "rougeL": ci.mean, "rougeL_low": ci.low, "rougeL_high": ci.high,
           "rougeL_paper": cp.mean, "rougeL_paper_low": cp.low, "rougeL_paper_high": cp.high}
    for k in (1, 2, 3, 4):
        row[f"bleu{k}"] = bleu(predictions, references, lang, k, stopwords)
    row["distinct1"] = distinct_n(predictions, 1, lang)
    row["distinct2"] = distinct_n(predictions, 2, lang)
    row["empty"] = sum(not p.strip() for p in predictions)
    return row


__all__ = ["CI", "CharTokenizer", "PairedResult", "ZH_STOPWORDS", "bleu", "bleu_tokens",
           "bootstrap_ci", "distinct_n", "guess_lang", "load_stopwords", "paired_test", "rouge_l",
           "rouge_l_scores", "score_all", "stopword_set", "tokens", "zh_words"]
