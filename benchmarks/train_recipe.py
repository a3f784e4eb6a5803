"""Step time and peak memory of a training recipe (e.g. whether colab-t4 fits a 16 GB T4).

    python benchmarks/train_recipe.py configs/colab-t4.yaml [--steps 20] [--set key=value ...]

Runs the recipe for ``--steps`` optimizer steps (no probe, no checkpoints) into a temporary folder
and prints the median seconds per optimizer step (from ``metrics.jsonl``, after the first two), the
windows and (non-padding) tokens per second and the peak memory: on CUDA the peak allocated by
torch, on CPU the peak resident set size of this process; ``--losses`` also prints each step's LM
and contrastive losses (to compare precisions or samplers, docs/speed.md). The last line reads
``recipe=<file> device=<d> step_s=<x> windows_per_s=<y> tokens_per_s=<t> peak_gib=<z>``.

A demo or ablation grid (``qlearn ablate`` config) is read through its ``train:`` section.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--losses", action="store_true", help="print the losses of every step")
    args = ap.parse_args()

    from qlearn.train import TrainConfig, read_metrics, read_yaml, train

    with tempfile.TemporaryDirectory() as tmp:
        sets = [*args.overrides, f"output_dir={tmp}", f"max_steps={args.steps}", "logging_steps=1",
                f"save_steps={10 * args.steps}", "probe_windows=0"]
        raw = read_yaml(args.config)
        if "train" in raw and "systems" in raw:  # an ablation grid: its shared training recipe
            cfg = TrainConfig.from_dict(read_yaml(args.config, [f"train.{s}" for s in sets])["train"])
        else:
            cfg = TrainConfig.from_yaml(args.config, sets)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        run = train(cfg)
        rows = read_metrics(run / "metrics.jsonl")
    times = [b["time"] - a["time"] for a, b in zip(rows, rows[1:])][2:] or [float("nan")]
    step = statistics.median(times)
    windows = cfg.batch_size * cfg.grad_accum / step
    tokens = statistics.median([r["tokens_per_s"] for r in rows[2:] if r.get("tokens_per_s")] or [float("nan")])
    if args.losses:
        print("loss_lm=" + ",".join(f"{r['loss_lm']:.4f}" for r in rows))
        print("loss_qc=" + ",".join(f"{r['loss_qc']:.4f}" for r in rows))
    if torch.cuda.is_available():
        device, peak = torch.cuda.get_device_name(), torch.cuda.max_memory_allocated() / 2**30
    else:
        device, peak = "cpu", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{args.config}: {cfg.base_model}, batch {cfg.batch_size} x {cfg.grad_accum}, "
          f"precision {cfg.precision}, checkpointing {cfg.gradient_checkpointing}")
    print(f"recipe={os.path.basename(args.config)} device={device.replace(' ', '_')} "
          f"step_s={step:.2f} windows_per_s={windows:.2f} tokens_per_s={tokens:.0f} peak_gib={peak:.2f}")


if __name__ == "__main__":
    sys.exit(main())
