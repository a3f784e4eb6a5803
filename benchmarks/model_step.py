"""Cost of the dual tower vs the plain LoRA model (the FT baseline) with the same LoRA settings.

    python benchmarks/model_step.py [--model smollm2-135m] [--batch 8] [--seq 128] [--device cuda]

Measures, on a batch of ``batch × seq`` tokens:
* a training step (forward + backward + AdamW): median time over ``--repeats`` after warm-ups,
  both models in one process, alternating, so that machine noise hits both alike;
* greedy generation of ``--new-tokens`` tokens with the KV cache from ``seq``-token prompts;
* peak memory of a training step, each model in its own subprocess (CUDA: peak allocated; CPU:
  peak resident set size of the process, which includes Python, torch and the loaded weights).

Goal (issue 5): step ≤ 1.35×, generation ≤ 1.3×, memory ≤ 1.35×. The last line reads
``ratio step=<x> generate=<y> memory=<z>``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import psutil
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from qlearn.assets import load_lm, pick_device  # noqa: E402
from qlearn.model import QARConfig, QuerierAwareLM  # noqa: E402

CONFIGS = {"ft": QARConfig(specific=False), "dual": QARConfig()}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def autocast_dtype(args) -> torch.dtype:
    """fp32 on CPU; on a GPU the weights stay fp32 and the step runs under bf16/fp16 autocast."""
    if pick_device(args.device).type != "cuda" or args.dtype in ("fp32", "float32"):
        return torch.float32
    if args.dtype in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def make_batch(tokenizer, batch, seq, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(100, len(tokenizer) - 100, (batch, seq), generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "labels": ids.to(device), "responder_mask": torch.ones_like(ids).to(device)}


def build(base, name):
    model = QuerierAwareLM.from_base(copy.deepcopy(base), CONFIGS[name])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, opt


def train_step(model, opt, batch, device, dtype):
    model.train()
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        out = model(**batch)
        loss = out.loss + (0.0 if out.querier_repr is None else 0.01 * out.querier_repr.float().pow(2).mean())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync(device)


def generate(model, batch, new_tokens, device, pad_id):
    model.eval()
    model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                   pad_token_id=pad_id)
    sync(device)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_memory(name, args):
    """Run in a subprocess: peak memory (MiB) of training steps of one model."""
    device, dtype = pick_device(args.device), autocast_dtype(args)
    base, tok = load_lm(args.model, dtype="fp32", device=str(device))
    batch = make_batch(tok, args.batch, args.seq, device)
    model = QuerierAwareLM.from_base(base, CONFIGS[name])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    proc = psutil.Process()
    loaded = proc.memory_info().rss / 2**20
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    peak, done = [loaded], threading.Event()

    def sample():  # CPU: the process's resident set, sampled every 5 ms during the steps
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss / 2**20)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(2):
        train_step(model, opt, batch, device, dtype)
    done.set()
    sampler.join()
    if device.type == "cuda":
        peak[0] = torch.cuda.max_memory_allocated() / 2**20
        loaded = 0.0
    print(json.dumps({"peak_mib": peak[0], "loaded_mib": loaded}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="auto", help="GPU: weights stay fp32, the step runs under "
                   "autocast in this dtype (auto = bf16 if supported); CPU: fp32")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--memory-of", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        return measure_memory(args.memory_of, args)

    device, dtype = pick_device(args.device), autocast_dtype(args)
    base, tok = load_lm(args.model, dtype="fp32", device=str(device))
    batch = make_batch(tok, args.batch, args.seq, device)
    models = {name: build(base, name) for name in CONFIGS}
    print(f"device={device} model={args.model} batch={args.batch}x{args.seq} autocast={dtype} "
          f"threads={torch.get_num_threads()}")

    times = {name: [] for name in CONFIGS}
    for i in range(args.warmup + args.repeats):
        for name, (model, opt) in models.items():
            t = timed(lambda: train_step(model, opt, batch, device, dtype))
            if i >= args.warmup:
                times[name].append(t)
    step = {n: statistics.median(ts) for n, ts in times.items()}
    print(f"train step: ft {step['ft']:.3f}s  dual {step['dual']:.3f}s  (median of {args.repeats})", flush=True)

    gen_times = {name: [] for name in CONFIGS}
    for i in range(1 + max(2, args.repeats // 2)):
        for name, (model, _) in models.items():
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                t = timed(lambda: generate(model, batch, args.new_tokens, device, tok.pad_token_id))
            if i >= 1:
                gen_times[name].append(t)
    gen = {n: statistics.median(ts) for n, ts in gen_times.items()}
    print(f"generate {args.new_tokens} tokens: ft {gen['ft']:.3f}s  dual {gen['dual']:.3f}s", flush=True)

    del models
    mem = {}
    for name in CONFIGS:
        cmd = [sys.executable, __file__, "--memory-of", name, "--model", args.model, "--batch",
               str(args.batch), "--seq", str(args.seq), "--dtype", args.dtype]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.device:
            cmd += ["--device", args.device]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        mem[name] = json.loads(res.stdout.strip().splitlines()[-1])
    kind = "peak allocated" if device.type == "cuda" else "peak RSS"
    print(f"memory ({kind}, MiB): ft {mem['ft']['peak_mib']:.0f}  dual {mem['dual']['peak_mib']:.0f}"
          f"  (before the steps: ft {mem['ft']['loaded_mib']:.0f}, dual {mem['dual']['loaded_mib']:.0f})")
    print(f"ratio step={step['dual'] / step['ft']:.2f} generate={gen['dual'] / gen['ft']:.2f} "
          f"memory={mem['dual']['peak_mib'] / mem['ft']['peak_mib']:.2f}")


if __name__ == "__main__":
    main()
