"""The systems of a grid (``qlearn ablate``): one entry of :data:`SYSTEMS` each.

Three kinds: :class:`PromptBaseline` (a prompt on the base model, no training), :class:`Trained`
(one ``qlearn.train`` run: TrainConfig overrides on the grid's shared ``train:`` block, its
checkpoint chosen on validation) and :class:`PerQuerier` (one LoRA per querier). A new baseline or
ablation is one entry (a trained one may also be a ``custom:`` entry of the config); a new kind is
a :class:`System` subclass with its own :meth:`~System.prepare`:

    >>> SYSTEMS["Ours (T=0.05)"] = Trained("Ours (T=0.05)", {"contrastive.temperature": 0.05})
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, ClassVar, Mapping

from ..runs import load_trained
from .baselines import baseline_replies, model_replies


@dataclass(frozen=True)
class System:
    """A system of the grid: its name, its TrainConfig overrides and the colour of its bars."""

    name: str
    overrides: Mapping = field(default_factory=dict)  # dotted TrainConfig keys -> values
    color: str = "tab:blue"  # its bars in plot_table
    trains: ClassVar[bool] = True  # a TrainConfig run: seeds apply and its recipe keys the cache

    def renamed(self, name: str, overrides: Mapping) -> "System":
        """The same kind under ``name`` (a seed's run, a ``custom:`` entry) with ``overrides``."""
        return replace(self, name=name, overrides=dict(overrides))

    def prepare(self, grid, run: str, rec: dict) -> Callable[[], list[str]]:
        """Train or load what ``run`` needs (filling ``rec``); returns the call that replies to
        ``grid.test`` (timed by the grid as ``gen_s``)."""
        raise NotImplementedError(f"{type(self).__name__}.prepare")

    def probe_model(self, grid, run: str, rec: dict):
        """``(model, tokenizer)`` for the swapped-asker probe, or None where it does not apply."""
        return None

    def __str__(self) -> str:
        return str(dict(self.overrides))


@dataclass(frozen=True)
class PromptBaseline(System):
    """A prompting baseline of :mod:`qlearn.evaluate.baselines` on the base model (no training)."""

    color: str = "tab:gray"
    retrieves: bool = False  # its prompt holds retrieved training examples (the grid's embedder)
    asker_free: bool = False  # its prompt does not change with the asker, so the probe applies
    trains: ClassVar[bool] = False

    def renamed(self, name: str, overrides: Mapping) -> "System":
        """Itself: a prompting baseline has no recipe to override."""
        return self

    def prepare(self, grid, run, rec):
        """The base model, prompted by :func:`~qlearn.evaluate.baselines.baseline_replies`."""
        model, tok = grid.base()
        return lambda: baseline_replies(self.name, model, tok, grid.test, grid.ds.train,
                                        embedder=grid.embedder() if self.retrieves else None,
                                        **grid.gen_kwargs())

    def probe_model(self, grid, run, rec):
        """The base model when the prompt is the same for every asker (Zero-shot)."""
        return grid.base() if self.asker_free else None

    def __str__(self) -> str:
        return "prompting baseline, base model"


@dataclass(frozen=True)
class Trained(System):
    """One ``qlearn.train`` run; its checkpoint is chosen on validation (``Grid.train_and_select``)."""

    def prepare(self, grid, run, rec):
        """Train (unless finished), select the checkpoint, reply with it."""
        model, tok, _ = grid.train_and_select(run, rec)
        return lambda: model_replies(model, tok, grid.test, **grid.gen_kwargs())

    def probe_model(self, grid, run, rec):
        """The selected checkpoint of the run."""
        tc = grid.cfg.train_config(run)
        return load_trained(Path(tc.output_dir) / rec["checkpoint"], tc)


@dataclass(frozen=True)
class PerQuerier(System):
    """One plain LoRA per querier on the total budget of one run (:mod:`.per_querier`)."""

    def prepare(self, grid, run, rec):
        """Train every querier's adapter; each test window goes to its querier's."""
        from .per_querier import per_querier_replies, train_per_querier

        tc = grid.cfg.train_config(run)
        start = time.perf_counter()
        folders = train_per_querier(tc, grid.ds, tc.output_dir)
        rec["train_s"], rec["checkpoint"] = round(time.perf_counter() - start, 1), "final"
        return lambda: per_querier_replies(folders, tc, grid.test, **grid.gen_kwargs())

    def __str__(self) -> str:
        return "one LoRA per querier, the same total budget"


PER_QUERIER = "Per-querier LoRA"
SYSTEMS: dict[str, System] = {s.name: s for s in (
    PromptBaseline("Zero-shot", asker_free=True), PromptBaseline("RPG"),
    PromptBaseline("Few-shot", retrieves=True), PromptBaseline("QCG"),
    Trained("FT", {"model.specific": False}, color="tab:gray"),
    Trained("Ours", color="tab:red"),
    # "w/o low-rank" as the official code means it: a frozen copy of the pretrained MLP + LoRA;
    # the control changes only the width (same random init as Ours); the old full-training copy
    Trained("w/o low-rank", {"model.specific_mlp": "copy_lora"}),
    Trained("w/o low-rank (random full-width)", {"model.specific_mlp": "full_random"}),
    Trained("w/o low-rank (full training)", {"model.specific_mlp": "copy_full"}),
    Trained("w/o clustering", {"n_clusters": 1}),
    Trained("w/o multi-view", {"contrastive.n_views": 1}),
    Trained("w/o contrastive", {"contrastive.qc_weight": 0.0}),
    Trained("Ours (residual fusion)", {"model.fusion": "residual"}, color="tab:red"),
    Trained("Ours (sum fusion)", {"model.fusion": "sum"}, color="tab:red"),
    Trained("Ours (frozen views)", {"contrastive.views_trainable": False}, color="tab:red"),
    Trained("Ours (no centering)", {"contrastive.qc_center": False}, color="tab:red"),
    Trained("Ours (zero init)", {"model.specific_init": "zero"}, color="tab:red"),
    PerQuerier(PER_QUERIER),  # one LoRA per querier on the same total budget (per_querier.py)
)}


def system_color(name: str) -> str:
    """The bar colour of a system: its entry's; other names red for Ours variants, else blue."""
    if name in SYSTEMS:
        return SYSTEMS[name].color
    return "tab:red" if name.startswith("Ours") else "tab:blue"


__all__ = ["PER_QUERIER", "PerQuerier", "PromptBaseline", "SYSTEMS", "System", "Trained",
           "system_color"]
