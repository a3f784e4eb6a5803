"""Distributed training for real: ``torchrun --nproc_per_node 2`` (gloo, CPU) runs ``qlearn train``
on the tiny model, checkpoints, is resumed from an earlier checkpoint, and both ranks end with
identical weights and contrastive memories, equal to the uninterrupted run's. Plus the shipped
DeepSpeed ZeRO-2 config."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")


def _torchrun(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT),
               TOKENIZERS_PARALLELISM="false")
    cmd = ["nice", "-n", "10", sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", "2", str(WORKER), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _ranks(run):
    from safetensors.torch import load_file

    states = [load_file(str(run / f"rank{r}.safetensors")) for r in (0, 1)]
    worlds = [(run / f"rank{r}.world").read_text().split() for r in (0, 1)]
    return states, worlds


@pytest.mark.slow
def test_two_rank_torchrun_checkpoints_resumes_and_ranks_agree(tmp_path):
    run = tmp_path / "run"
    recipe = dict(source="synthetic", responder=None, n_clusters=1, base_model="tiny",
                  model=dict(rank=4, lora_r=4), contrastive=dict(view_dim=16, memory_size=8),
                  output_dir=str(run),
                  max_steps=4, batch_size=2, grad_accum=1, logging_steps=1, save_steps=2,
                  save_total_limit=None, lr=1e-2, warmup=0, precision="fp32",
                  gradient_checkpointing=False, probe_windows=0, max_length=64, seed=5)
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump(recipe), encoding="utf-8")

    _torchrun(["train", "--config", str(cfg)], tmp_path)
    assert (run / "checkpoint-2").is_dir() and (run / "checkpoint-4").is_dir()
    (a0, a1), worlds = _ranks(run)
    assert worlds[0][:2] == worlds[1][:2] == ["2", "ParallelMode.DISTRIBUTED"], worlds
    assert a0.keys() == a1.keys() and any(k.startswith("qc.") and "memory" in k for k in a0)
    for k in a0:  # DDP averages the gradients; the memories are all-gathered writes
        torch.testing.assert_close(a0[k], a1[k], rtol=0, atol=0, msg=k)
    full = a0
    moved = [k for k in full if k.startswith("w.") and "lora_B" in k]
    assert moved and all(full[k].abs().sum() > 0 for k in moved)  # it trained

    # interrupted after step 2: resume from checkpoint-2 and run to step 4 again
    shutil.rmtree(run / "checkpoint-4")
    shutil.rmtree(run / "final")
    for r in (0, 1):
        (run / f"rank{r}.safetensors").unlink()
    _torchrun(["train", "--config", str(cfg), "--resume"], tmp_path)
    (b0, b1), worlds = _ranks(run)
    assert worlds[0][2] == worlds[1][2] == "4"
    for k in b0:
        torch.testing.assert_close(b0[k], b1[k], rtol=0, atol=0, msg=k)
        torch.testing.assert_close(b0[k], full[k], rtol=1e-5, atol=1e-6, msg=k)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert (run / "final" / "adapter_model.safetensors").exists() and (run / "README.md").exists()


def test_the_deepspeed_zero2_config_the_readme_names():
    path = ROOT / "configs" / "ds_zero2.json"
    assert "configs/ds_zero2.json" in (ROOT / "README.md").read_text(encoding="utf-8")
    ds = json.loads(path.read_text(encoding="utf-8"))
    assert ds["zero_optimization"]["stage"] == 2  # ZeRO-3 shards parameters: qlearn refuses it
    # batch, accumulation, clipping and precision come from the recipe ("auto": the Trainer fills them)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert ds[key] == "auto"
    from qlearn.train import TrainConfig
    from qlearn.trainer import training_arguments

    args = training_arguments(TrainConfig(output_dir="/tmp/x", trainer_args={}), "no")
    assert not args.deepspeed  # off unless asked for: --set trainer_args.deepspeed=configs/ds_zero2.json
