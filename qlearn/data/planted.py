"""A planted-signal benchmark: the same real queries asked by several queriers, where the right
reply depends on who asks, by a rule a deterministic checker scores (:mod:`qlearn.evaluate.asker_fit`).

Beyond the paper (it has no such benchmark). Everything is made at run time from the Chit-Chat
dataset (MIT; the ``chitchat-dataset`` package), seeded, so nothing is committed but this code.

The dialogues
-------------
The responder is "Sam"; there are four queriers. Each window is::

    <querier>: <statement 1>        real Chit-Chat message (no "?"), carrying an identity cue
    Sam:       <reply 1>            the real message that followed it (no rule)
    <querier>: <statement 2>        ditto
    Sam:       <reply 2>
    <querier>: <query>              a real Chit-Chat question, *shared by several queriers*
    Sam:       <opener> <answer>    the target: the asker's opener + the real reply to the query

The **rule**: Sam answers a question from each querier with that querier's opener (``RULES``:
"Certainly," / "lol yeah," / "Oh sweetie," / "With respect,"). The answer after the opener is the
real next message of the Chit-Chat conversation, so ROUGE-L measures query-dependent content too.
The history replies carry no opener (the rule applies to answers to questions), so the opener
cannot be copied from the context.

Two variants, built from identical draws (same queries, askers, history and cues):

* ``visible``: the querier's name is the speaker label of their turns;
* ``hidden``: every querier's turns are labelled ``"Friend"``; who asks can only be inferred from
  the identity cues of the two history statements. (``Window.querier`` and ``role_pair_id`` keep
  the true asker: training labels for the contrastive loss, the checker's key, and the routing key
  of the per-querier-LoRA baseline, which is therefore an oracle in this variant.)

How the hidden variant is made hard
-----------------------------------
A fixed greeting per querier would make the asker trivial to read off. Here the cues are
*shared and partial*, so that recognising the asker needs evidence aggregated over turns:

* four surface markers (``MARKERS``: a trailing " :)", a leading "so", "!!" for the final
  punctuation, a trailing " tbh") are each used by **two** queriers (``STYLE``: a cycle, querier i
  has markers i and i+1), so one marked turn narrows the asker down to two;
* each history statement shows one of its querier's two markers with probability
  ``cue_rate`` (0.85) — otherwise none — chosen at random per turn;
* only two history statements per window; the query itself is never marked (it is the same text
  for every asker), and statements that already contain a marker are not used.

So a window whose two statements show two *different* markers identifies the asker; the same
marker twice, or one marker, leaves two candidates; none leaves four. The Bayes-optimal
asker-identification rate over a split is the mean of ``1 / |askers consistent with the cues|``
and is recorded in ``Dataset.stats["hidden_ceiling"]`` (about 0.68 with the defaults): no system
can beat that rate of asker-fit in the hidden variant except by chance.

The splits
----------
``n_train_queries`` queries are each asked by **two** queriers in training (the six pairs of
four queriers in turn, so every querier asks equally often). The test split holds
``n_test_seen`` of those queries asked by one of the two *other* queriers (the (query, asker) pair
is unseen; the query was seen, from other askers) plus ``n_test_new`` queries never seen in
training; the validation split likewise (the fourth querier for its seen queries, and its own new
queries), so train, val and test (query, asker) pairs are pairwise disjoint.
"""
from __future__ import annotations

import itertools
import random
import re
from collections import Counter

from .pipeline import Dataset
from .types import Turn, Window

RESPONDER = "Sam"
QUERIERS = ("Ana", "Ben", "Cleo", "Dev")
RULES = {"Ana": "Certainly,", "Ben": "lol yeah,", "Cleo": "Oh sweetie,", "Dev": "With respect,"}
HIDDEN_LABEL = "Friend"
VARIANTS = ("visible", "hidden")
MARKERS = ("smile", "so", "bang", "tbh")
STYLE = {q: (MARKERS[i], MARKERS[(i + 1) % len(MARKERS)]) for i, q in enumerate(QUERIERS)}
_MARKER_RE = re.compile(r":\)|!!|\btbh\b|^\s*so\b", re.I)
_OK = re.compile(r"^[A-Za-z0-9 ,.'!?-]+$")
_NAMES = re.compile(r"\b(" + "|".join(QUERIERS + (RESPONDER, HIDDEN_LABEL)) + r")\b", re.I)


class PlantedWindow(Window):
    """A Window whose ``query`` is its last querier turn (the speaker label may be "Friend")."""

    @property
    def query(self) -> str:
        return self.turns[-2].text


def mark(text: str, marker: str | None) -> str:
    """``text`` in a querier's style: one of ``MARKERS`` applied (None: unchanged)."""
    if marker is None:
        return text
    bare = text.rstrip(" .!")
    if marker == "smile":
        return f"{bare} :)"
    if marker == "so":
        return f"so {text[0].lower()}{text[1:]}"
    if marker == "bang":
        return f"{bare}!!"
    if marker == "tbh":
        return f"{bare} tbh"
    raise ValueError(f"unknown marker {marker!r}: use one of {MARKERS}")


def markers_in(text: str) -> set[str]:
    """The markers a statement shows (the inverse of :func:`mark` on clean statements)."""
    found = set()
    if text.endswith(" :)"):
        found.add("smile")
    if text.startswith("so "):
        found.add("so")
    if text.endswith("!!"):
        found.add("bang")
    if text.endswith(" tbh"):
        found.add("tbh")
    return found


def consistent_askers(window: Window) -> list[str]:
    """The queriers whose style fits every history statement of ``window`` (hidden variant)."""
    seen = set()
    for t in window.turns[:-2]:
        if t.speaker != window.responder:
            seen |= markers_in(t.text)
    return [q for q in QUERIERS if seen <= set(STYLE[q])]


def _words(text: str) -> int:
    return len(text.split())


def chitchat_pairs(root=None, seed: int = 0):
    """``(questions, statements)`` from Chit-Chat: (message, the partner's next message) pairs.

    questions: a 3–12-word message ending in "?", answered by a 2–10-word message without "?";
    statements: a 3–10-word message without "?" or any marker, answered by 1–6 words without "?".
    Plain ASCII only, none of the benchmark's names, de-duplicated by lower-cased text, in a
    seeded order."""
    from .pipeline import read_show

    show = read_show("chitchat", root)
    questions, statements, seen = [], [], set()
    for chunk in show.chunks:
        for a, b in zip(chunk.turns, chunk.turns[1:]):
            if a.speaker == b.speaker:
                continue
            q, r = " ".join(a.text.split()), " ".join(b.text.split())
            if not (_OK.match(q) and _OK.match(r)) or q.lower() in seen or _NAMES.search(q + " " + r):
                continue
            if q.endswith("?") and 3 <= _words(q) <= 12 and 2 <= _words(r) <= 10 and "?" not in r:
                questions.append((q, r))
            elif ("?" not in q and 3 <= _words(q) <= 10 and 1 <= _words(r) <= 6 and "?" not in r
                  and not _MARKER_RE.search(q) and not q.lower().startswith("so")):
                statements.append((q, r))
            else:
                continue
            seen.add(q.lower())
    rng = random.Random(f"planted/{seed}")
    rng.shuffle(questions)
    rng.shuffle(statements)
    return questions, statements


def planted_dataset(variant: str = "visible", seed: int = 0, n_train_queries: int = 300,
                    n_test_seen: int = 100, n_test_new: int = 40, n_val_seen: int = 36,
                    n_val_new: int = 12, cue_rate: float = 0.85, root=None) -> Dataset:
    """The planted-signal benchmark (see the module doc) as a qlearn :class:`Dataset`."""
    if variant not in VARIANTS:
        raise ValueError(f"planted variant {variant!r}: use one of {VARIANTS}")
    if n_test_seen + n_val_seen > n_train_queries:
        raise ValueError(f"n_test_seen + n_val_seen = {n_test_seen + n_val_seen} exceeds "
                         f"n_train_queries = {n_train_queries}: they are drawn from the train queries")
    if not 0 <= cue_rate <= 1:
        raise ValueError(f"cue_rate={cue_rate}: use a probability in [0, 1]")
    questions, statements = chitchat_pairs(root, seed)
    n_q = n_train_queries + n_test_new + n_val_new
    if len(questions) < n_q or len(statements) < 50:
        raise ValueError(f"Chit-Chat gave {len(questions)} questions and {len(statements)} "
                         f"statements; {n_q} questions are needed")
    rng = random.Random(f"planted/{seed}/draws")
    train_q = questions[:n_train_queries]
    new_test = questions[n_train_queries:n_train_queries + n_test_new]
    new_val = questions[n_train_queries + n_test_new:n_q]
    pairs = list(itertools.combinations(QUERIERS, 2))
    plan = {"train": [], "val": [], "test": []}  # (query index or ("new", ...), asker)
    askers_of = {}
    for i in range(n_train_queries):
        askers_of[i] = pairs[i % len(pairs)]
        plan["train"] += [(train_q[i], q) for q in askers_of[i]]
    seen_idx = list(range(n_train_queries))
    rng.shuffle(seen_idx)
    for k, i in enumerate(seen_idx[:n_test_seen + n_val_seen]):
        others = [q for q in QUERIERS if q not in askers_of[i]]
        first = others[k % 2]  # alternate, so every querier asks in test about equally often
        second = others[1 - k % 2]
        if k < n_test_seen:
            plan["test"].append((train_q[i], first))
        else:
            plan["val"].append((train_q[i], second))
    for k, qa in enumerate(new_test):
        plan["test"].append((qa, QUERIERS[k % len(QUERIERS)]))
    for k, qa in enumerate(new_val):
        plan["val"].append((qa, QUERIERS[(k + 1) % len(QUERIERS)]))

    splits = {name: [] for name in plan}
    seen_queries = set(train_q)
    pid = {q: i + 1 for i, q in enumerate(QUERIERS)}
    for name in ("train", "val", "test"):
        for k, ((query, answer), asker) in enumerate(plan[name]):
            label = asker if variant == "visible" else HIDDEN_LABEL
            turns = []
            for s, r in rng.sample(statements, 2):
                marker = rng.choice(STYLE[asker]) if rng.random() < cue_rate else None
                turns += [Turn(label, mark(s, marker)), Turn(RESPONDER, r)]
            turns += [Turn(label, query), Turn(RESPONDER, f"{RULES[asker]} {answer}")]
            splits[name].append(PlantedWindow(
                id=f"planted-{name}-{k:04d}", turns=turns, responder=RESPONDER, querier=asker,
                role_pair_id=pid[asker], segment_id=f"planted-{name}-{k:04d}", split=name,
                extra={"query_seen_in_train": name == "train" or (query, answer) in seen_queries}))
    for ws in splits.values():
        rng.shuffle(ws)

    def ceiling(ws):
        return round(sum(1 / len(consistent_askers(w)) for w in ws) / max(len(ws), 1), 4)

    stats = {"source": f"planted-{variant}", "responder": RESPONDER, "queriers": len(QUERIERS),
             "rules": dict(RULES), "style": {q: list(m) for q, m in STYLE.items()},
             "cue_rate": cue_rate, "seed": seed,
             **{f"{k}_windows": len(v) for k, v in splits.items()},
             "test_queries_seen_in_train": sum(w.extra["query_seen_in_train"] for w in splits["test"]),
             "windows_per_querier": {k: dict(Counter(w.querier for w in v)) for k, v in splits.items()},
             "hidden_ceiling": {k: ceiling(v) for k, v in splits.items()},
             "chitchat_questions": len(questions), "chitchat_statements": len(statements)}
    return Dataset(f"planted-{variant}", RESPONDER, list(QUERIERS), splits["train"], splits["val"],
                   splits["test"], stats)


__all__ = ["HIDDEN_LABEL", "MARKERS", "QUERIERS", "RESPONDER", "RULES", "STYLE", "VARIANTS",
           "PlantedWindow", "chitchat_pairs", "consistent_askers", "mark", "markers_in",
           "planted_dataset"]
