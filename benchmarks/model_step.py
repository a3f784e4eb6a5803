"""Cost of the dual tower vs the plain LoRA model (the FT baseline) with the same LoRA settings.

    python benchmarks/model_step.py [--shape smollm2-135m] [--batch 8] [--seq 128] [--device cuda]
                                    [--dtype bf16] [--profile]

The model is either a real checkpoint (``--model``, loaded offline through ``qlearn.assets``; the
default, SmolLM2-135M) or, with ``--shape``, a **random-weight model of a real architecture built
from its config alone** (``smollm2-135m``, ``qwen2.5-0.5b``, ``llama-3-8b``, ``tiny``: the public
config values are written out below, nothing is downloaded), so that the same ratios can be
measured on a machine that cannot download weights. Costs do not depend on the weights' values.

Measures, on a batch of ``batch × seq`` tokens:

* a training step (forward + backward + AdamW): FT and dual alternate in one process, and the
  reported ratio is the **median of the paired ratios** ``dual_i / ft_i`` (robust to a machine
  that other jobs load unevenly); the load average is printed with every measurement;
* greedy generation of ``--new-tokens`` tokens with the KV cache from ``seq``-token prompts
  (paired the same way);
* peak memory of a training step, each model in its own subprocess (CUDA: peak allocated; CPU:
  peak resident set size of the process, which includes Python, torch and the loaded weights).

``--profile`` instead runs torch.profiler over a few steps of each model and prints, per op, the
self time of FT and dual and what the dual step adds, the same summed by kind (matmul, attention,
dropout, copies, elementwise, loss, optimizer) and the exact FLOPs of one step of each (the
floor of the ratio); docs/speed.md explains the breakdown. ``--compile`` compiles each decoder
layer of both models (``torch.compile``; slower than eager on the 2-core CPU, see docs/speed.md).

Goal (issue 5, 14): step ≤ 1.35×, generation ≤ 1.3×, memory ≤ 1.35×. The last line reads
``ratio step=<x> generate=<y> memory=<z>``.

``--dtype``: on a GPU the weights stay fp32 and the step runs under bf16 (``auto``: bf16 where
supported, else fp16) autocast; ``--weights bf16`` stores the frozen base in bf16 instead (what a
GPU recipe does for an 8B model). On CPU ``auto`` is what the training recipes' ``precision: auto``
runs: bf16 autocast on a CPU with AVX512-BF16 or AMX (``qlearn.trainer.cpu_has_bf16``), else fp32.
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

from qlearn.assets import pick_device  # noqa: E402
from qlearn.model import QARConfig, QuerierAwareLM  # noqa: E402
from qlearn.trainer import cpu_has_bf16  # noqa: E402

CONFIGS = {"ft": QARConfig(specific=False), "dual": QARConfig()}

# Public config.json values of each architecture (HF hub), written out so nothing is downloaded.
SHAPES = {
    "smollm2-135m": ("llama", dict(  # HuggingFaceTB/SmolLM2-135M-Instruct
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
        rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True, hidden_act="silu",
        initializer_range=0.041666666666666664, bos_token_id=1, eos_token_id=2, pad_token_id=2)),
    "qwen2.5-0.5b": ("qwen2", dict(  # Qwen/Qwen2.5-0.5B-Instruct
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, hidden_act="silu",
        initializer_range=0.02, use_sliding_window=False, bos_token_id=151643,
        eos_token_id=151645, pad_token_id=151643)),
    "llama-3-8b": ("llama", dict(  # meta-llama/Meta-Llama-3-8B-Instruct
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
        rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False, hidden_act="silu",
        initializer_range=0.02, bos_token_id=128000, eos_token_id=128009, pad_token_id=128001)),
    "tiny": ("llama", dict(  # a 2-layer Llama for tests
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True, hidden_act="silu",
        initializer_range=0.02, bos_token_id=1, eos_token_id=2, pad_token_id=0)),
}


def shape_model(shape: str, dtype: torch.dtype, device: torch.device):
    """A random-weight causal LM of ``shape`` (``from_config``, sdpa attention) and its pad id."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    kind, values = SHAPES[shape]
    config = (LlamaConfig if kind == "llama" else Qwen2Config)(**values)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.generation_config.pad_token_id = values["pad_token_id"]
    return model.eval(), values["pad_token_id"], values["vocab_size"]


def load_base(args, device):
    """``(model, pad_id, vocab_size)`` from ``--shape`` (random weights) or ``--model``."""
    weights = torch.bfloat16 if args.weights == "bf16" else torch.float32
    if args.shape:
        return shape_model(args.shape, weights, device)
    from qlearn.assets import load_lm

    base, tok = load_lm(args.model, dtype=weights, device=str(device))
    return base, tok.pad_token_id, len(tok)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def autocast_dtype(args) -> torch.dtype:
    """The autocast dtype of the step (fp32 = no autocast); see the module docstring."""
    if args.dtype in ("fp32", "float32"):
        return torch.float32
    if pick_device(args.device).type != "cuda":  # auto: what the CPU recipes' precision: auto picks
        return torch.bfloat16 if args.dtype == "bf16" or (args.dtype == "auto" and cpu_has_bf16()) \
            else torch.float32
    if args.dtype in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def make_batch(vocab, batch, seq, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(100, vocab // 4), vocab - min(100, vocab // 4), (batch, seq), generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "labels": ids.to(device), "responder_mask": torch.ones_like(ids).to(device)}


def build(base, name, compile_layers=False):
    model = QuerierAwareLM.from_base(copy.deepcopy(base), CONFIGS[name])
    if compile_layers:  # regional compilation: every decoder layer runs the same compiled code
        for layer in model.hf.get_decoder().layers:
            layer.compile()
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
    """``(wall seconds, CPU seconds of this process)`` of ``fn()``."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def load() -> str:
    return "load=" + "/".join(f"{x:.1f}" for x in os.getloadavg())


def paired(models, fn, warmup, repeats, label):
    """Alternate FT and dual ``warmup + repeats`` times; ``(median times, median paired ratio)``.

    Also prints the median paired ratio of CPU time (this process's, all threads): with one
    thread it hardly depends on what else the machine runs."""
    times = {name: [] for name in models}
    cpu = {name: [] for name in models}
    for i in range(warmup + repeats):
        for name, model in models.items():
            t, c = timed(lambda: fn(model))
            if i >= warmup:
                times[name].append(t)
                cpu[name].append(c)
        if i >= warmup:
            print(f"  {label} {i - warmup + 1}/{repeats}: ft {times['ft'][-1]:.3f}s "
                  f"dual {times['dual'][-1]:.3f}s ratio {times['dual'][-1] / times['ft'][-1]:.3f} "
                  f"(CPU time {cpu['dual'][-1] / cpu['ft'][-1]:.3f})  {load()}")
    ratios = [d / f for d, f in zip(times["dual"], times["ft"])]
    cpu_ratio = statistics.median(d / f for d, f in zip(cpu["dual"], cpu["ft"]))
    print(f"  {label}: median paired ratio {statistics.median(ratios):.3f} (CPU time {cpu_ratio:.3f})")
    return {n: statistics.median(ts) for n, ts in times.items()}, statistics.median(ratios)


def measure_memory(name, args):
    """Run in a subprocess: peak memory (MiB) of training steps of one model."""
    device, dtype = pick_device(args.device), autocast_dtype(args)
    base, _, vocab = load_base(args, device)
    batch = make_batch(vocab, args.batch, args.seq, device)
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


def profile(models, batch, device, dtype, steps, top):
    """Per-op self time (ms per step) of FT and dual under torch.profiler, and the difference."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    per_op = {name: {} for name in models}
    for model, opt in models.values():
        train_step(model, opt, batch, device, dtype)  # warm-up
    for _ in range(steps):  # one profiled step of each in turn, so that load drifts hit both
        for name, (model, opt) in models.items():
            with torch_profile(activities=acts) as prof:
                train_step(model, opt, batch, device, dtype)
            for e in prof.key_averages():
                ms, n = per_op[name].get(e.key, (0.0, 0))
                per_op[name][e.key] = (ms + getattr(e, key) / 1e3 / steps, n + e.count)
    per_op = {name: {k: (ms, n // steps) for k, (ms, n) in ops.items()} for name, ops in per_op.items()}
    totals = {name: sum(ms for ms, _ in per_op[name].values()) for name in models}
    ops = sorted(set(per_op["ft"]) | set(per_op["dual"]),
                 key=lambda k: -max(per_op["dual"].get(k, (0, 0))[0], per_op["ft"].get(k, (0, 0))[0]))
    print(f"{'op':48s} {'ft ms':>9s} {'n':>5s} {'dual ms':>9s} {'n':>5s} {'+ms':>8s} {'+% of ft':>8s}")
    for op in ops[:top]:
        (f, fn), (d, dn) = per_op["ft"].get(op, (0.0, 0)), per_op["dual"].get(op, (0.0, 0))
        print(f"{op[:48]:48s} {f:9.1f} {fn:5d} {d:9.1f} {dn:5d} {d - f:8.1f} {100 * (d - f) / totals['ft']:7.1f}%")
    print(f"{'total self time':48s} {totals['ft']:9.1f} {'':5s} {totals['dual']:9.1f} {'':5s} "
          f"{totals['dual'] - totals['ft']:8.1f} {100 * (totals['dual'] / totals['ft'] - 1):7.1f}%")
    print("by kind (ms per step):")
    for kind in [*KINDS, "other"]:
        f, d = (sum(ms for op, (ms, _) in per_op[n].items() if op_kind(op) == kind) for n in ("ft", "dual"))
        print(f"  {kind:44s} {f:9.1f} {'':5s} {d:9.1f} {'':5s} {d - f:8.1f} {100 * (d - f) / totals['ft']:7.1f}%")
    from torch.utils.flop_counter import FlopCounterMode

    flops = {}
    for name, (model, opt) in models.items():
        with FlopCounterMode(display=False) as counter:
            train_step(model, opt, batch, device, dtype)
        flops[name] = counter.get_total_flops()
    print(f"FLOPs per step (matmuls and attention): ft {flops['ft']:.3g}  dual {flops['dual']:.3g}  "
          f"ratio {flops['dual'] / flops['ft']:.3f} (the floor)")
    print(f"profile ratio={totals['dual'] / totals['ft']:.2f}  {load()}")


KINDS = {  # op name prefixes (after "aten::"), by what they cost
    "matmul (mm, addmm, bmm)": ("mm", "addmm", "bmm", "matmul", "linear", "MmBackward", "AddmmBackward"),
    "attention (sdpa)": ("_scaled_dot_product", "scaled_dot_product", "ScaledDotProduct"),
    "dropout (bernoulli)": ("bernoulli", "dropout", "native_dropout"),
    "loss (log_softmax, nll)": ("_log_softmax", "log_softmax", "nll_loss", "cross_entropy"),
    "optimizer (AdamW)": ("Optimizer", "lerp", "addcdiv", "addcmul", "sqrt", "_foreach"),
    "copies (cat, copy, slice, split, fill, zero)": ("cat", "copy_", "_to_copy", "slice", "split",
                                                     "chunk", "fill_", "zero_", "zeros", "clone",
                                                     "contiguous", "narrow", "index", "embedding"),
    "elementwise (mul, add, norms, rotary, silu)": ("mul", "add", "div", "pow", "rsqrt", "mean", "neg",
                                                    "silu", "sum", "sub", "exp", "sigmoid"),
}


def op_kind(op: str) -> str:
    name = op.split("::", 1)[-1].replace("autograd::engine::evaluate_function: ", "")
    for kind, prefixes in KINDS.items():
        if name.startswith(prefixes):
            return kind
    return "other"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="a checkpoint loaded offline (qlearn.assets)")
    p.add_argument("--shape", choices=list(SHAPES), default=None,
                   help="random weights of this architecture from its config (instead of --model)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast dtype of the step (auto: bf16 on a GPU that supports it, else fp16; on CPU bf16 "
                        "where the CPU has AVX512-BF16/AMX, as precision: auto trains, else fp32)")
    p.add_argument("--weights", default="fp32", choices=["fp32", "bf16"],
                   help="dtype of the frozen base weights (new weights train in fp32)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--profile", action="store_true", help="per-op profile of FT vs dual, then exit")
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--top", type=int, default=30, help="ops listed by --profile")
    p.add_argument("--compile", action="store_true", help="torch.compile each decoder layer "
                   "(both models; the first steps compile, --warmup should cover them)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--memory-of", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        return measure_memory(args.memory_of, args)

    device, dtype = pick_device(args.device), autocast_dtype(args)
    base, pad_id, vocab = load_base(args, device)
    batch = make_batch(vocab, args.batch, args.seq, device)
    models = {name: build(base, name, args.compile) for name in CONFIGS}
    del base
    gpu = f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""
    print(f"device={device}{gpu} model={args.shape or args.model}{' (random weights)' if args.shape else ''} "
          f"batch={args.batch}x{args.seq} weights={args.weights} autocast={dtype} "
          f"threads={torch.get_num_threads()} attn={models['ft'][0].hf.config._attn_implementation}"
          f"{' compiled' if args.compile else ''}  {load()}")
    if args.profile:
        return profile(models, batch, device, dtype, args.profile_steps, args.top)

    step, r_step = paired({n: m for n, m in models.items()},
                          lambda m: train_step(m[0], m[1], batch, device, dtype),
                          args.warmup, args.repeats, "step")
    tokens = args.batch * args.seq
    print(f"train step: ft {step['ft']:.3f}s ({tokens / step['ft']:.0f} tokens/s)  dual {step['dual']:.3f}s "
          f"({tokens / step['dual']:.0f} tokens/s)  (medians of {args.repeats})  {load()}")

    def gen(m):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            generate(m[0], batch, args.new_tokens, device, pad_id)

    g, r_gen = paired(models, gen, 1, max(2, args.repeats // 2), "generate")
    print(f"generate {args.new_tokens} tokens: ft {g['ft']:.3f}s  dual {g['dual']:.3f}s  {load()}")

    del models
    mem = {}
    if not args.no_memory:
        for name in CONFIGS:
            cmd = [sys.executable, __file__, "--memory-of", name, "--batch", str(args.batch),
                   "--seq", str(args.seq), "--dtype", args.dtype, "--weights", args.weights]
            cmd += ["--shape", args.shape] if args.shape else ["--model", args.model]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            if args.device:
                cmd += ["--device", args.device]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(f"memory subprocess for {name} failed:\n{res.stderr[-2000:]}")
            mem[name] = json.loads(res.stdout.strip().splitlines()[-1])
        kind = "peak allocated" if device.type == "cuda" else "peak RSS"
        print(f"memory ({kind}, MiB): ft {mem['ft']['peak_mib']:.0f}  dual {mem['dual']['peak_mib']:.0f}"
              f"  (before the steps: ft {mem['ft']['loaded_mib']:.0f}, dual {mem['dual']['loaded_mib']:.0f})")
    memory = f"{mem['dual']['peak_mib'] / mem['ft']['peak_mib']:.2f}" if mem else "n/a"
    print(f"ratio step={r_step:.2f} generate={r_gen:.2f} memory={memory}")


if __name__ == "__main__":
    main()
