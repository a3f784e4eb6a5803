"""Windows -> training batches (docs/method.md §5-6).

Every turn is rendered with ``qlearn.template``: ``<turn-start>{speaker}\\n{text}<turn-end>\\n``,
the speaker's name on every turn. Per token:

=========================  ==========  ===================
piece                      ``labels``  ``responder_mask``
=========================  ==========  ===================
turn start                 -100        0
responder name + sep       -100        1
responder text             token       1
responder turn end         token       0
querier turn (all of it)   -100        0
newline after a turn       -100        0
=========================  ==========  ===================

So the LM loss covers every responder turn of the window that follows a querier turn (content and
end-of-turn token; ``Window.supervised_indices``: a responder turn with no query before it in the
window is context only, see ``qlearn.data.audit``), and the querier representation is pooled over
the responder's tokens. Each window also gives its querier
index (``role_pair_id - 1``) and cluster id (0 when the window has none: one cluster).

A tokenizer whose family has a start-of-text token (Llama-3's ``<|begin_of_text|>``,
``qlearn.template.start_of_text``) gets it once, first, with label -100; it counts towards
``max_length`` and survives truncation. Windows longer than ``max_length`` tokens lose whole turns
from the left (the final responder turn
is always kept; if it alone is too long, its first tokens go). ``Collator.stats`` counts them.
Batches are right-padded with a pad token that must differ from the turn-end token.
"""
from __future__ import annotations

import random
import warnings
from typing import Iterator, Sequence

import torch

from .template import turn_format

IGNORE = -100


class Collator:
    """``Collator(tokenizer)(windows) -> dict`` of ``input_ids, attention_mask, labels,
    responder_mask, querier, cluster`` tensors (``Trainer``'s ``data_collator``)."""

    def __init__(self, tokenizer, max_length: int = 592):
        self.tokenizer = tokenizer
        self.fmt = turn_format(tokenizer)
        self.max_length = max_length
        end_id = tokenizer.convert_tokens_to_ids(self.fmt.end)
        if tokenizer.pad_token_id is None or tokenizer.pad_token_id == end_id:
            raise ValueError(
                f"tokenizer pad token {tokenizer.pad_token!r} is missing or equals the turn-end token "
                f"{self.fmt.end!r}: padding would hide every turn end. Load the tokenizer with "
                "qlearn.assets.load_lm/load_tokenizer or call qlearn.assets.ensure_distinct_pad(tokenizer).")
        # the start-of-text token, once at the start (none for ChatML tokenizers)
        self.bos_ids = [tokenizer.convert_tokens_to_ids(self.fmt.bos)] if self.fmt.bos else []
        self.stats = {"windows": 0, "truncated_turns": 0, "truncated_tokens": 0}
        self._warned = False

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def encode_turn(self, speaker: str, text: str, is_responder: bool,
                    supervised: bool | None = None):
        """``(input_ids, labels, responder_mask)`` lists of one rendered turn; ``supervised``
        (default: ``is_responder``) says whether its text and turn end are labels."""
        supervised = is_responder if supervised is None else supervised
        pieces = [(self._ids(self.fmt.start), False, False),
                  (self._ids(speaker + self.fmt.sep), False, is_responder),
                  (self._ids(text), supervised, is_responder),
                  (self._ids(self.fmt.end), supervised, False),
                  (self._ids("\n"), False, False)]
        ids, labels, mask = [], [], []
        for toks, supervised, pooled in pieces:
            ids += toks
            labels += toks if supervised else [IGNORE] * len(toks)
            mask += [int(pooled)] * len(toks)
        return ids, labels, mask

    def encode(self, window) -> dict:
        """One window -> lists ``input_ids, labels, responder_mask`` and ints ``querier, cluster``."""
        labelled = set(window.supervised_indices())  # responder turns after the first query
        turns = [self.encode_turn(t.speaker, t.text, t.speaker == window.responder,
                                  supervised=i in labelled) for i, t in enumerate(window.turns)]
        total = sum(len(t[0]) for t in turns)
        dropped = 0
        limit = self.max_length - len(self.bos_ids)  # the start-of-text token is kept first
        while total > limit and len(turns) > 1:  # drop whole turns from the left
            total -= len(turns.pop(0)[0])
            dropped += 1
        ids, labels, mask = (sum((t[k] for t in turns), []) for k in range(3))
        cut = max(0, len(ids) - limit)  # the final turn alone is still too long
        ids, labels, mask = ids[cut:], labels[cut:], mask[cut:]
        n = len(self.bos_ids)
        ids, labels, mask = self.bos_ids + ids, [IGNORE] * n + labels, [0] * n + mask
        self.stats["windows"] += 1
        self.stats["truncated_turns"] += dropped
        self.stats["truncated_tokens"] += cut
        if (dropped or cut) and not self._warned:
            self._warned = True
            warnings.warn(f"window {window.id!r} is longer than max_length={self.max_length} tokens: "
                          f"dropped {dropped} turn(s) and {cut} token(s) from the left (counted in "
                          "Collator.stats; raise max_length to keep them)", stacklevel=2)
        return {"input_ids": ids, "labels": labels, "responder_mask": mask,
                "querier": window.querier_index,
                "cluster": 0 if window.cluster_id is None else int(window.cluster_id)}

    def __call__(self, windows: Sequence) -> dict[str, torch.Tensor]:
        feats = [w if isinstance(w, dict) else self.encode(w) for w in windows]
        width = max(len(f["input_ids"]) for f in feats)
        batch = {k: torch.full((len(feats), width), fill, dtype=torch.long) for k, fill in
                 [("input_ids", self.tokenizer.pad_token_id), ("attention_mask", 0),
                  ("labels", IGNORE), ("responder_mask", 0)]}
        for i, f in enumerate(feats):
            n = len(f["input_ids"])
            batch["input_ids"][i, :n] = torch.tensor(f["input_ids"])
            batch["attention_mask"][i, :n] = 1
            batch["labels"][i, :n] = torch.tensor(f["labels"])
            batch["responder_mask"][i, :n] = torch.tensor(f["responder_mask"])
        batch["querier"] = torch.tensor([f["querier"] for f in feats])
        batch["cluster"] = torch.tensor([f["cluster"] for f in feats])
        return batch


class ClusterBatchSampler(torch.utils.data.Sampler):
    """Batches of indices drawn within one cluster (``cluster_batches=True``; the official code
    samples at random). Reshuffled each epoch (``set_epoch``). Under DDP, accelerate hands whole
    batches to the ranks in turn, so every batch still comes from one cluster."""

    def __init__(self, clusters: Sequence[int], batch_size: int, seed: int = 0):
        self.clusters, self.batch_size, self.seed, self.epoch = list(clusters), batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        groups: dict[int, list[int]] = {}
        for i, c in enumerate(self.clusters):
            groups.setdefault(c, []).append(i)
        batches = []
        for c in sorted(groups):
            idx = groups[c]
            rng.shuffle(idx)
            batches += [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return sum(-(-self.clusters.count(c) // self.batch_size) for c in set(self.clusters))
