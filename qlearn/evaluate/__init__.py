"""Evaluation: metrics, the win-rate judge, querier differentiation, baselines and ablations."""
from .metrics import (CI, CharTokenizer, PairedResult, bleu, bootstrap_ci, distinct_n, guess_lang,
                      load_stopwords, paired_test, rouge_l, rouge_l_scores, score_all, tokens)

__all__ = ["CI", "CharTokenizer", "PairedResult", "bleu", "bootstrap_ci", "distinct_n",
           "guess_lang", "load_stopwords", "paired_test", "rouge_l", "rouge_l_scores", "score_all",
           "tokens"]
