"""The querier-identifiability probe: can "which querier asked?" be read off the pooled querier
representation of a window (docs/method.md §5.1)? Leave-one-out k-NN (cosine) on held-out windows,
before and after training; ``qlearn train`` writes the scores to ``probe.json`` and the vectors to
``querier_reps.npz`` in the run folder."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .model import QuerierAwareLM

PROBE_FILE = "probe.json"
REPS_FILE = "querier_reps.npz"  # the probe windows' pooled vectors: before, after, querier


def probe_sample(windows, n: int, seed: int = 0):
    """Up to ``n`` windows, taken round-robin over queriers (so rare queriers are represented)."""
    rng = random.Random(seed)
    by_q: dict[int, list] = {}
    for w in windows:
        by_q.setdefault(w.querier_index, []).append(w)
    for ws in by_q.values():
        rng.shuffle(ws)
    out, depth = [], 0
    while len(out) < n and any(depth < len(ws) for ws in by_q.values()):
        out += [ws[depth] for _, ws in sorted(by_q.items()) if depth < len(ws)][: n - len(out)]
        depth += 1
    return out


@torch.no_grad()
def querier_representations(model: QuerierAwareLM, collator, windows, batch_size: int = 8,
                            progress: bool = True) -> np.ndarray:
    """Pooled ``querier_repr`` of each window (teacher-forced, as in training): ``[n, d]``."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    device = next(p for p in model.parameters() if p.requires_grad).device
    reps = []
    for i in tqdm(range(0, len(windows), batch_size), desc="probe", disable=not progress,
                  leave=False):
        b = collator(windows[i:i + batch_size])
        out = model(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device),
                    responder_mask=b["responder_mask"].to(device))
        reps.append(out.querier_repr.float().cpu())
    model.train(was_training)
    return torch.cat(reps).nan_to_num().numpy()


def knn_probe(reps: np.ndarray, labels: Sequence[int], k: int = 5) -> dict:
    """Leave-one-out k-NN accuracy (cosine) of "which querier asked?", with the majority baseline."""
    from sklearn.model_selection import LeaveOneOut, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    y = np.asarray(labels)
    k = min(k, len(y) - 1)
    pred = cross_val_predict(KNeighborsClassifier(n_neighbors=k, metric="cosine"), reps, y,
                             cv=LeaveOneOut())
    return {"accuracy": float((pred == y).mean()), "chance": float(np.bincount(y).max() / len(y)),
            "n_windows": int(len(y)), "n_queriers": int(len(set(y.tolist()))), "k": int(k)}


def querier_probe(model, collator, windows, k: int = 5) -> tuple[dict, np.ndarray]:
    """``(knn_probe result, the pooled vectors [n, d])`` of ``windows``."""
    reps = querier_representations(model, collator, windows)
    return knn_probe(reps, [w.querier_index for w in windows], k), reps


def read_querier_reps(run) -> dict:
    """What a training run saved for its probe windows: ``before`` and ``after`` (``[n, d]``
    pooled vectors) and ``querier`` (names), ready for ``viz.umap_2d`` and ``viz.scatter_by``."""
    path = Path(run) / REPS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: train with probe_windows > 0 (and the specific "
                                "stream on) to save the probe windows' querier vectors")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}
