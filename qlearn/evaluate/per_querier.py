"""Per-querier LoRA (beyond the paper, OPPU-style): one small adapter per querier.

Each querier gets its own plain LoRA model (``QARConfig(specific=False)``, the FT architecture),
trained only on that querier's windows with qlearn's trainer. The *total* budget equals one FT
run: the grid's ``max_steps`` is shared out in proportion to each querier's training windows.
At test time each window goes to its querier's adapter. No checkpoint selection (each adapter's
final weights are used); a querier without training windows falls back to the base model.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Sequence


def _folder_name(querier: str) -> str:
    return re.sub(r"[\\/:*?\"<>|\s]+", "_", querier).strip("_") or "querier"


def steps_per_querier(train: Sequence, total_steps: int) -> dict[str, int]:
    """``total_steps`` shared out in proportion to each querier's windows (at least 1 each)."""
    counts: dict[str, int] = {}
    for w in train:
        counts[w.querier] = counts.get(w.querier, 0) + 1
    n = sum(counts.values())
    return {q: max(1, round(total_steps * c / n)) for q, c in sorted(counts.items())}


def train_per_querier(cfg, dataset, out_dir) -> dict[str, Path]:
    """Train one LoRA per querier of ``dataset`` with the recipe ``cfg`` (a TrainConfig, whose
    ``max_steps`` is the total budget); returns ``{querier: folder with the saved model}``."""
    from ..card import write_model_card
    from ..collate import Collator
    from ..model import QuerierAwareLM
    from ..runs import base_lm
    from ..train import METRICS_FILE
    from ..trainer import (MetricsLogger, QARTrainer, QARTrainingModule, resolve_precision,
                           training_arguments)

    if cfg.max_steps <= 0:
        raise ValueError("per-querier LoRA shares out max_steps: set train.max_steps > 0")
    out = Path(out_dir)
    folders = {}
    for q, steps in steps_per_querier(dataset.train, cfg.max_steps).items():
        folder = out / _folder_name(q)
        folders[q] = folder / "final"
        if (folder / "final").exists():
            continue
        qcfg = dataclasses.replace(cfg, output_dir=str(folder), max_steps=steps, probe_windows=0,
                                   model=dataclasses.replace(cfg.model, specific=False),
                                   save_steps=10 ** 9)
        base, tok = base_lm(qcfg.base_model, qcfg.seed)
        module = QARTrainingModule(QuerierAwareLM.from_base(base, qcfg.model), None)
        folder.mkdir(parents=True, exist_ok=True)
        qcfg.to_yaml(folder / "train_config.yaml")
        trainer = QARTrainer(model=module, args=training_arguments(qcfg, resolve_precision(qcfg)),
                             train_dataset=[w for w in dataset.train if w.querier == q],
                             data_collator=Collator(tok, max_length=qcfg.max_length),
                             callbacks=[MetricsLogger(folder / METRICS_FILE)])
        print(f"qlearn per-querier LoRA: {q}: {steps} steps")
        trainer.train()
        module.save(folder / "final")
        write_model_card(folder)
    (out / "adapters.json").write_text(json.dumps({q: str(p) for q, p in folders.items()},
                                                  ensure_ascii=False, indent=1), encoding="utf-8")
    return folders


def per_querier_replies(folders: dict[str, Path], cfg, windows: Sequence, **generate_kwargs) -> list[str]:
    """Each window answered by its querier's adapter (the base model for an unknown querier)."""
    from ..runs import base_lm, load_trained
    from .baselines import model_replies

    replies: list[str | None] = [None] * len(windows)
    for q in sorted({w.querier for w in windows}):
        idx = [i for i, w in enumerate(windows) if w.querier == q]
        if q in folders:
            model, tok = load_trained(folders[q], dataclasses.replace(cfg, model=dataclasses.replace(
                cfg.model, specific=False)))
        else:
            print(f"qlearn per-querier LoRA: no adapter for {q!r}: base model for {len(idx)} windows")
            model, tok = base_lm(cfg.base_model, cfg.seed)
        for i, r in zip(idx, model_replies(model, tok, [windows[i] for i in idx], **generate_kwargs)):
            replies[i] = r
    return replies
