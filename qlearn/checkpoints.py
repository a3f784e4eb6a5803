"""Resuming a run (``qlearn train --resume``): its newest complete ``checkpoint-N``, that
checkpoint's step, and ``metrics.jsonl`` cut back to that step so the resumed log reads like an
uninterrupted one. (Which checkpoints a finished run offers for selection: :mod:`qlearn.runs`.)"""
from __future__ import annotations

import json
from pathlib import Path

from .model import has_weights


def last_checkpoint(run) -> Path:
    """The newest *complete* ``checkpoint-N`` of a run (its trainer_state.json is written last);
    :class:`~qlearn.errors.CheckpointError` when there is none."""
    from .errors import CheckpointError, warn

    run = Path(run)
    found = sorted((p for p in run.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]))
    complete = [p for p in found if (p / "trainer_state.json").exists() and has_weights(p)]
    if not complete:
        what = (f"only incomplete checkpoint(s) {[p.name for p in found]}" if found else
                "no checkpoint-N folder" if run.is_dir() else "no such folder")
        raise CheckpointError(f"--resume: {run} has {what} to resume from; run without --resume "
                              "to start afresh, or set output_dir to the interrupted run "
                              "(checkpoints are written every save_steps)")
    if complete[-1] != found[-1]:
        warn(f"--resume: {found[-1].name} is incomplete (interrupted while saving); resuming from "
             f"{complete[-1].name}")
    return complete[-1]


def checkpoint_step(checkpoint) -> int:
    """The global step of a checkpoint (its trainer_state.json, else its folder name)."""
    try:
        return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError):
        return int(Path(checkpoint).name.split("-")[-1])


def truncate_metrics(path, step: int) -> int:
    """Drop the rows of ``metrics.jsonl`` logged after ``step`` (and any half-written last line),
    so a resumed run's file reads exactly like an uninterrupted one; returns ``step``."""
    path = Path(path)
    if not path.exists():
        return step
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # the process was killed mid-write
            continue
        if isinstance(row, dict) and row.get("step", 0) <= step:
            keep.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in keep), encoding="utf-8")
    tmp.replace(path)
    return step
