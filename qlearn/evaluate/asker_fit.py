"""Asker-fit: does a reply follow the *asking* querier's rule? (the planted-signal benchmark)

Each querier of :mod:`qlearn.data.planted` has an opener (``RULES``) that Sam's answer to them
must begin with. The checker reads only the reply's first words (lower-cased, punctuation
ignored: "lol yeah," = "LOL yeah" = "lol, yeah"), so it is deterministic and needs no model.

Per window it gives ``1.0`` (the reply opens with the asker's opener) or ``0.0`` (another
querier's opener, or none), so paired tests and bootstrap CIs work exactly as for ROUGE-L.

Chance: a system that has learnt *that* replies open with some querier's opener but not *whose*
scores ``1/N`` among the replies that follow some rule (N = 4 queriers, 0.25); the replies that
follow no rule score 0 whatever the asker. :func:`asker_fit` reports both shares, and
``chance = (1 - none) / N``, the asker-fit of guessing the opener at random with the same
share of opened replies.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def rule_followed(reply: str, rules: Mapping[str, str]) -> str | None:
    """The querier whose opener ``reply`` begins with (the longest match), or None."""
    words = _words(reply)
    best = None
    for querier, opener in rules.items():
        ow = _words(opener)
        if ow and words[:len(ow)] == ow and (best is None or len(ow) > len(_words(rules[best]))):
            best = querier
    return best


def asker_fit_scores(replies: Sequence[str], askers: Sequence[str],
                     rules: Mapping[str, str]) -> list[float]:
    """Per window: 1.0 when the reply opens with its asker's opener, else 0.0."""
    if isinstance(replies, str):
        raise TypeError("pass a list of replies (one per window), not a single string")
    if len(replies) != len(askers):
        raise ValueError(f"{len(replies)} replies but {len(askers)} askers: one asker per reply")
    unknown = sorted(set(askers) - set(rules))
    if unknown:
        raise ValueError(f"askers {unknown} have no rule; rules are given for {sorted(rules)}")
    return [float(rule_followed(r, rules) == a) for r, a in zip(replies, askers)]


def asker_fit(replies: Sequence[str], askers: Sequence[str], rules: Mapping[str, str],
              seed: int = 0) -> dict:
    """``asker_fit`` (share, with a 95% bootstrap CI), ``other_rule`` (another querier's opener),
    ``no_rule`` (none), and ``chance`` = (1 - no_rule) / N."""
    from .metrics import bootstrap_ci

    scores = asker_fit_scores(replies, askers, rules)
    followed = [rule_followed(r, rules) for r in replies]
    ci = bootstrap_ci(scores, seed=seed)
    none = float(np.mean([f is None for f in followed]))
    return {"asker_fit": ci.mean, "asker_fit_low": ci.low, "asker_fit_high": ci.high,
            "other_rule": float(np.mean([f is not None and f != a for f, a in zip(followed, askers)])),
            "no_rule": none, "chance": (1 - none) / len(rules)}


def window_rules(windows) -> tuple[list[str], dict[str, str]]:
    """``(askers, rules)`` of planted windows: each window's true asker and the rule table."""
    from ..data.planted import RULES

    return [w.querier for w in windows], dict(RULES)


__all__ = ["asker_fit", "asker_fit_scores", "rule_followed", "window_rules"]
