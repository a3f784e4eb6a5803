"""Run folders of ``qlearn train``: the base model of a recipe, a trained model from a run folder,
``final/`` or a checkpoint, and a run's candidate checkpoints (for selection on validation)."""
from __future__ import annotations

import hashlib
from pathlib import Path


def base_lm(name: str, seed: int = 42):
    """``(model, tokenizer)`` of a base model; ``tiny`` is the tests' random Llama (seeded)."""
    from .assets import load_lm, tiny_lm

    return tiny_lm(seed=seed) if name == "tiny" else load_lm(name)


def load_trained(folder, train_cfg=None):
    """``(model, tokenizer)`` from a run folder, ``final/`` or a checkpoint of ``qlearn.train``."""
    from .model import CONFIG_FILE, QuerierAwareLM
    from .train import TrainConfig

    folder = Path(folder)
    if (folder / "final" / CONFIG_FILE).exists():
        folder = folder / "final"
    if train_cfg is None:
        for cand in (folder / "train_config.yaml", folder.parent / "train_config.yaml"):
            if cand.exists():
                train_cfg = TrainConfig.from_yaml(cand)
                break
        else:
            raise FileNotFoundError(f"no train_config.yaml in {folder} or its parent: pass the run "
                                    "folder written by `qlearn train`")
    base, tok = base_lm(train_cfg.base_model, train_cfg.seed)
    return QuerierAwareLM.from_pretrained(base, folder).eval(), tok


def checkpoints(run: Path) -> list[Path]:
    """Candidate weights of a run: every checkpoint plus ``final/``, identical files once."""
    from .model import WEIGHTS_FILE

    run = Path(run)
    cands = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    cands = [c for c in cands if (c / WEIGHTS_FILE).exists()] + [run / "final"]
    seen, out = set(), []
    for c in reversed(cands):  # prefer final/ over an identical last checkpoint
        digest = hashlib.sha1((c / WEIGHTS_FILE).read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append(c)
    return out[::-1]
