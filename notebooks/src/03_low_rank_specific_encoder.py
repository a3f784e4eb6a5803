# %%
META = {
    "title": "03 · The dual tower: a general encoder and a low-rank querier-specific encoder",
    "goals": [
        "Draw the two streams of the querier-aware model and say which weights each one shares",
        "Build the dual tower step by step on a real model without editing any transformers file",
        "Check parity: the wrapped model reproduces the base model exactly where it should",
        "Count trainable parameters against the rank k, and estimate the memory they cost",
        "Say what 'low rank' means, with singular values",
    ],
    "time": "30-45 minutes; the code runs in 2-4 minutes on a laptop CPU.",
    "hardware": "CPU is enough (quick mode, SmolLM2-135M); on a Colab GPU the full mode uses "
                "Qwen2.5-0.5B-Instruct.",
    "gpu": True,
    "render": "all",
}

# %% [markdown]
# ## 1. Two streams over the same tokens
#
# The querier-aware model (paper §4, [docs/method.md](../docs/method.md) §4) runs **one** pretrained decoder twice over the
# same tokens:
#
# * the **general stream** `h` is the pretrained model with LoRA adapters (rank 16) on the attention
#   projections q, k, v, o and on the MLP projections gate, up, down — exactly the usual LoRA
#   fine-tuning (our FT baseline);
# * the **specific stream** `s` uses the same embeddings, the same attention (and the same LoRA), the
#   same norms, but in every layer its MLP is **replaced** by a new, small SwiGLU of rank *k*:
#   `W_down · (SiLU(W_gate·x) ⊙ W_up·x)` with `W_gate, W_up ∈ R^{k×d}` and `W_down ∈ R^{d×k}`.
#
# Per layer, with the shared attention `Attn` and norms:
#
# ```
# a_h = h + Attn(norm_in(h))            a_s = s + Attn(norm_in(s))      # same weights
# h'  = a_h + MLP(norm_post(a_h))        s'  = a_s + MLP_k(norm_post(a_s))  # MLP_k: new, rank k
# ```
#
# After the last layer the two meet before the (shared) LM head — the **fusion**:
# `logits = lm_head((norm(h) + norm_specific(s)) / 2)` in the paper's code (`fusion="mean"`).
#
# The specific stream is "querier-specific" only through its training signal: the contrastive loss
# of notebook 04 pulls together its representations of dialogues with the same querier. There are no
# per-querier weights; the querier's name reaches the model only through the text.

# %%
import copy
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyBboxPatch

from qlearn.assets import load_lm
from qlearn.model import DualMLP, QARConfig, QuerierAwareLM, Streams, SwiGLU, parameter_report

torch.manual_seed(0)


def box(ax, x, y, w, h, text, color):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=color, ec="black", lw=1))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)


fig, ax = plt.subplots(figsize=(10, 6))
ax.set_xlim(0, 10), ax.set_ylim(0, 10), ax.axis("off")
shared, general, specific = "#dddddd", "#9ecae1", "#fdae6b"
box(ax, 3.2, 0.3, 3.6, 0.8, "token embeddings (shared, frozen)", shared)
for x, name in [(0.6, "general stream h"), (6.2, "specific stream s")]:
    box(ax, x, 1.6, 3.2, 1.0, "attention + LoRA\n(same weights)", shared)
    ax.text(x + 1.6, 1.35, name, ha="center", fontsize=10, weight="bold")
box(ax, 0.6, 3.0, 3.2, 1.0, "pretrained MLP + LoRA", general)
box(ax, 6.2, 3.0, 3.2, 1.0, "low-rank MLP (rank k, new)", specific)
ax.text(5.0, 3.5, "× L layers", ha="center", fontsize=11)
box(ax, 0.6, 4.8, 3.2, 0.8, "norm (frozen)", general)
box(ax, 6.2, 4.8, 3.2, 0.8, "norm_specific (copy, trained)", specific)
box(ax, 6.2, 6.0, 3.2, 0.8, "norm_role_proj → mean over\nresponder tokens → contrastive", specific)
box(ax, 3.2, 7.2, 3.6, 0.8, "fusion: (h + s) / 2", "#c7e9c0")
box(ax, 3.2, 8.6, 3.6, 0.8, "LM head (shared, frozen)", shared)
for x0, y0, x1, y1 in [(5, 1.1, 2.2, 1.6), (5, 1.1, 7.8, 1.6), (2.2, 2.6, 2.2, 3.0), (7.8, 2.6, 7.8, 3.0),
                       (2.2, 4.0, 2.2, 4.8), (7.8, 4.0, 7.8, 4.8), (7.8, 4.4, 7.8, 6.0),
                       (2.2, 5.6, 4.0, 7.2), (7.0, 5.6, 6.0, 7.2), (5, 8.0, 5, 8.6)]:
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->"))
ax.set_title("One decoder, two streams: grey = shared, blue = general, orange = new (trained)")
plt.show()

# %% [markdown]
# ## 2. The base model and one of its layers
#
# qlearn never edits a transformers file. It loads the model as usual and changes a few module
# *instances*. Let us look at what there is to change.

# %%
t0 = time.perf_counter()
base, tokenizer = load_lm(MODEL, dtype="fp32")
device = base.device
cfg = base.config
d, L, ffn = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
print(f"{MODEL}: {cfg.model_type}, d={d}, {L} layers, MLP width {ffn}, "
      f"{sum(p.numel() for p in base.parameters()) / 1e6:.0f} M parameters, loaded in "
      f"{time.perf_counter() - t0:.1f} s")
print(base.model.layers[0])

# %% [markdown]
# ## 3. Step by step
#
# ### 3.1 The low-rank SwiGLU
#
# The pretrained MLP has three `d × ffn` matrices; the specific one has three `d × k` matrices.
# qlearn's `SwiGLU(d, k)` names them `w_gate`, `w_up`, `w_down` — deliberately not `gate_proj` etc.,
# because peft attaches LoRA to every module whose name *ends* in a target name, and we do not want
# LoRA on top of a module that is trained in full anyway.

# %%
k = 64
low = SwiGLU(d, k, cfg.hidden_act).to(device)
full_mlp = base.model.layers[0].mlp
n_low = sum(p.numel() for p in low.parameters())
n_full = sum(p.numel() for p in full_mlp.parameters())
print(f"pretrained MLP: {n_full:,} parameters; rank-{k} SwiGLU: {n_low:,} "
      f"({100 * n_low / n_full:.1f} %) per layer")
x = torch.randn(2, 5, d, device=device)
print("same input and output shape:", tuple(full_mlp(x).shape), tuple(low(x).shape))

# %% [markdown]
# ### 3.2 Two streams in one batch
#
# How can one decoder run two streams and keep two KV caches without a forked modeling file? The
# paper's code stacks the batch twice: rows `0..B-1` are the general stream, rows `B..2B-1` the
# specific one. Everything that does not care (embeddings, rotary positions, the causal mask,
# attention, the KV cache) simply sees a batch of 2B. Only two places must tell the halves apart:
#
# 1. each layer's MLP: the first half goes to the pretrained MLP, the second to the low-rank one
#    (`DualMLP`);
# 2. the final norm: each half gets its own norm and the two are fused back to B rows (`DualNorm`),
#    so the LM head, the loss and `generate()` see an ordinary batch of B.
#
# The stacking itself is a `forward_pre_hook` on the decoder that replaces `input_ids`,
# `attention_mask` and `position_ids` by `[x; x]`. Here is the MLP part by hand:

# %%
dual = DualMLP(full_mlp, low, Streams())
stacked = torch.cat([x, x])  # [2B, T, d]
out = dual(stacked)
print("general half equals the pretrained MLP:", torch.equal(out[:2], full_mlp(x)))
print("specific half equals the low-rank MLP:", torch.equal(out[2:], low(x)))

# %% [markdown]
# ### 3.3 The whole model
#
# `QuerierAwareLM.from_base` does the three edits (hook, `DualMLP` in every layer, `DualNorm`), then
# applies peft's LoRA (r=16, α=8, dropout 0.05) and marks the new modules trainable. It edits the base
# model in place, like peft's `get_peft_model`, so we give it a copy.

# %%
dual_model = QuerierAwareLM.from_base(copy.deepcopy(base), QARConfig(rank=64, fusion="mean")).eval()
mlp0 = dual_model.hf.model.layers[0].mlp
print(type(mlp0).__name__, "-> general:", type(mlp0.general).__name__, "with LoRA on",
      [n for n, _ in mlp0.general.named_children() if n.endswith("proj")])
print("            specific:", mlp0.specific)
print(dual_model.hf.model.norm)

# %% [markdown]
# ## 4. Parity checks
#
# A wrapper like this is easy to get subtly wrong (a half swapped, a mask not doubled, a cache of the
# wrong size). The strongest check: set it up so that the dual tower **must** equal the base model.
#
# * **Specific stream off** (`QARConfig(specific=False)`, the plain LoRA model; LoRA starts as a no-op):
#   logits equal the base model's.
# * **Full-size copy**: `rank=None` makes the specific MLP a copy of the pretrained one; without LoRA,
#   both streams compute the same thing and `mean` fusion averages two equal tensors. Both streams
#   really run, so this checks the stacking, the split and the fusion.
# * **Residual fusion** (qlearn's own): `norm(h) + α·norm_specific(s)` with α = 0 at the start.

# %%
texts = ["Penny: Are you coming to the party tonight?\nSheldon: I have a prior engagement with my",
         "Leonard: Hi!"]
tokenizer.padding_side = "left"
batch = tokenizer(texts, return_tensors="pt", padding=True).to(device)
with torch.no_grad():
    reference = base(**batch).logits


def max_diff(config):
    model = QuerierAwareLM.from_base(copy.deepcopy(base), config).eval()
    with torch.no_grad():
        return (model(**batch).logits - reference).abs().max().item()


for name, config in [("specific stream off", QARConfig(specific=False)),
                     ("rank=None copy, no LoRA, mean", QARConfig(rank=None, lora_r=0)),
                     ("residual fusion, rank 64", QARConfig(fusion="residual")),
                     ("mean fusion, rank 64 (official)", QARConfig(fusion="mean"))]:
    print(f"{name:34s} max |logits - base| = {max_diff(config):.2e}")

# %% [markdown]
# The last line is not a bug: with the official `mean` fusion and a freshly initialised low-rank MLP,
# the specific stream has *no* real MLP yet, and averaging with it moves the logits far from the base
# model. Training has to repair this first. How far is it? Compare the language-model loss on a short
# paragraph:

# %%
paragraph = ("The library opens at nine in the morning and closes at six in the evening. Students "
             "can borrow up to five books at a time, and they must return them within two weeks.")
enc = tokenizer(paragraph, return_tensors="pt").to(device)
losses = {}
with torch.no_grad():
    losses["base model"] = base(**enc, labels=enc["input_ids"]).loss.item()
    for fusion in ("mean", "sum", "residual"):
        m = QuerierAwareLM.from_base(copy.deepcopy(base), QARConfig(fusion=fusion)).eval()
        losses[f"dual, {fusion}"] = m(**enc, labels=enc["input_ids"]).loss.item()
for k_, v in losses.items():
    print(f"{k_:16s} LM loss {v:.2f}")

# %% [markdown]
# ## 5. Generation with both KV caches
#
# `generate()` is transformers' own: the hook doubles the inputs at every decoding step, so the cache
# holds 2B rows (one per stream). With the cache or without it, greedy decoding gives the same text.

# %%
gen_model = QuerierAwareLM.from_base(copy.deepcopy(base), QARConfig(fusion="residual")).eval()
with torch.no_grad():
    gen_model.hf.model.norm.alpha.fill_(0.3)  # let the (random) specific stream matter a little
kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
cached = gen_model.generate(**batch, **kw)
uncached = gen_model.generate(**batch, use_cache=False, **kw)
print("cache == no cache:", torch.equal(cached, uncached))
for row in tokenizer.batch_decode(cached[:, batch["input_ids"].shape[1]:], skip_special_tokens=True):
    print("→", row)

# %% [markdown]
# ## 6. What trains, and what it costs
#
# `parameter_report` lists trainable and frozen parameters per component, with the memory they need
# for training (weights + gradients + AdamW's two fp32 moments for the trainable ones; activations
# not included — `benchmarks/model_step.py` measures a whole step).

# %%
report = parameter_report(dual_model)
report

# %% [markdown]
# How do the counts grow with the rank *k*? LoRA (r=16) on 7 projections is fixed; the specific
# MLPs grow as `3·d·k·L`. At `rank=None` (the "w/o low-rank" ablation) the specific MLP is a full
# trainable copy.

# %% figure=03_params_vs_rank
ranks = [4, 16, 64, 256] if QUICK else [4, 16, 64, 256, 1024]
rows = {}
for r in ranks + [None]:
    rep = parameter_report(QuerierAwareLM.from_base(copy.deepcopy(base), QARConfig(rank=r)))
    rows["full" if r is None else r] = (rep.loc["LoRA (attention)", "trainable"]
                                        + rep.loc["LoRA (MLP)", "trainable"],
                                        rep.loc["specific MLPs", "trainable"])
labels = [str(r) for r in rows]
lora_n = np.array([v[0] for v in rows.values()]) / 1e6
spec_n = np.array([v[1] for v in rows.values()]) / 1e6
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.bar(labels, lora_n, label="LoRA r=16 (shared by both streams)")
ax.bar(labels, spec_n, bottom=lora_n, label="specific MLPs")
ax.set_xlabel("rank k of the specific MLP"), ax.set_ylabel("trainable parameters (M)")
ax.set_title(f"{MODEL}: trainable parameters vs rank")
ax.legend()
plt.show()
for lab, a, b in zip(labels, lora_n, spec_n):
    print(f"rank {lab:>5}: LoRA {a:.2f} M + specific MLPs {b:.2f} M")

# %% [markdown]
# ## 7. What "low rank" means
#
# Each specific MLP maps `d → k → d`. Whatever it learns, the map `x ↦ W_down·(…)` passes through a
# k-dimensional bottleneck: its output lives in the (at most) k-dimensional column space of `W_down`.
# The singular values of a matrix tell how many directions it really uses. Compare a pretrained full
# MLP's `down_proj` (d × ffn) with a freshly initialised low-rank `w_down` (d × k):

# %% figure=03_singular_values
pre = base.model.layers[L // 2].mlp.down_proj.weight.detach().float().cpu()
new = dual_model.hf.model.layers[L // 2].mlp.specific.w_down.weight.detach().float().cpu()
s_pre, s_new = torch.linalg.svdvals(pre), torch.linalg.svdvals(new)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.semilogy((s_pre / s_pre[0]).numpy(), label=f"pretrained down_proj ({pre.shape[0]}×{pre.shape[1]})")
ax.semilogy((s_new / s_new[0]).numpy(), label=f"random rank-{k} w_down ({new.shape[0]}×{new.shape[1]})")
ax.set_xlabel("index"), ax.set_ylabel("singular value / largest")
ax.set_title("Singular values: a low-rank MLP has at most k of them")
ax.legend()
plt.show()


def effective_rank(s):
    """exp(entropy of the normalised singular values): 'how many directions are used'."""
    p = s / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


print(f"effective rank: pretrained {effective_rank(s_pre):.0f} of {min(pre.shape)}, "
      f"random low-rank {effective_rank(s_new):.0f} of {min(new.shape)}")

# %% [markdown]
# A random matrix spreads its energy evenly over all k directions (a flat spectrum); a trained one
# concentrates it. Exercise 2 trains the specific stream for a few steps and looks again.
#
# ## 8. Exercises
#
# **Exercise 1.** Without building anything, compute the number of trainable parameters of the dual
# tower on Llama-3-8B (d=4096, MLP width 14336, 32 layers, 8 KV heads of size 128) with LoRA r=16 on
# the 7 projections and rank k=64. Compare with the table in [docs/method.md](../docs/method.md) §4.5 (≈ 67.1 M). Then check your
# formula on this notebook's model against `parameter_report`.

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def trainable(d, ffn, L, kv_dim, r=16, k=64):
#     lora = L * r * (2 * (d + d) + 2 * (d + kv_dim) + 3 * (d + ffn))  # q,o; k,v; gate,up,down
#     specific = 3 * d * k * L
#     norms = 2 * d  # norm_specific + norm_role_proj
#     return lora, specific, lora + specific + norms
#
# print(trainable(4096, 14336, 32, 8 * 128))   # (41943040, 25165824, 67117056)
# kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
# print(trainable(d, ffn, L, kv), report.loc["total", "trainable"])
# ```
# </details>

# %% [markdown]
# **Exercise 2.** Train only the specific stream for ~20 AdamW steps (lr 1e-3) on the paragraph above
# (LM loss, `fusion="mean"`), then plot the singular values of one layer's `w_down` before and after,
# and print the LM loss every 5 steps. Does the spectrum stay flat? Does the loss go down towards the
# base model's?

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# m = QuerierAwareLM.from_base(copy.deepcopy(base), QARConfig(rank=64, lora_r=0)).train()
# layer = m.hf.model.layers[L // 2].mlp.specific
# before = torch.linalg.svdvals(layer.w_down.weight.detach().float().cpu())
# opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
# for step in range(20):
#     loss = m(**enc, labels=enc["input_ids"]).loss
#     loss.backward(); opt.step(); opt.zero_grad()
#     if step % 5 == 0:
#         print(step, round(loss.item(), 2))
# after = torch.linalg.svdvals(layer.w_down.weight.detach().float().cpu())
# plt.semilogy(before / before[0], label="random init"); plt.semilogy(after / after[0], label="after 20 steps")
# plt.legend(); plt.show()
# print(effective_rank(before), effective_rank(after))
# ```
# The loss falls quickly (7.4 → 3.6 on SmolLM2 in 20 steps): the specific stream learns to be a
# useful second opinion. The spectrum barely moves yet (effective rank 63 → 61): 20 steps on one
# paragraph change the loss long before they give the matrix a structure. Try 200 steps, or look at a
# `w_down` from a trained run of notebook 04.
# </details>

# %% [markdown]
# **Exercise 3.** `fusion="sum"` adds the two normalised streams without halving them. Before
# training, how does the spread of the logits (their standard deviation per position) compare with
# the base model's, for `sum`, `mean` and `residual`? Why does the paper average instead of adding?

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# with torch.no_grad():
#     print("base", base(**enc).logits.std(-1).mean().item())
#     for fusion in ("mean", "sum", "residual"):
#         m = QuerierAwareLM.from_base(copy.deepcopy(base), QARConfig(fusion=fusion)).eval()
#         print(fusion, m(**enc).logits.std(-1).mean().item())
# ```
# On SmolLM2: base 3.5, `mean` 2.5, `sum` 5.0, `residual` 3.5. `sum` adds two normalised vectors,
# which acts like lowering the softmax temperature: over-confident logits. `mean` halves that sum; as
# the two untrained streams point in different directions, their average is *shorter* than either, so
# the logits flatten. The paper averages to keep the scale of one stream once the streams agree;
# `residual` starts exactly at the base model and lets training decide how much of the specific
# stream to mix in.
# </details>

# %% [markdown]
# ## Summary
#
# * The dual tower is one pretrained decoder run on a stacked batch `[x; x]`: shared embeddings,
#   attention, LoRA and norms; the specific half gets new low-rank MLPs and its own final norm.
# * Three small edits of module instances (a pre-hook, `DualMLP`, `DualNorm`) are enough; the LM head,
#   the loss and `generate()` with its KV cache are transformers' own.
# * Parity checks pin it down: specific stream off, full-size copy with mean fusion, and the residual
#   fusion all reproduce the base model's logits.
# * Trainable: LoRA + 3·d·k·L for the specific MLPs + two norms — a few percent of the model.
# * Next, notebook 04 trains the specific stream with the querier-contrastive loss.

# %% [markdown]
# ## Questionnaire
#
# Answer in a sentence or two each, without looking back if you can; then check the
# notebook (teachers: answer notes are in `docs/teaching_guide.md`).
#
# 1. What do the general and the specific stream share, and where do they differ?
# 2. How does one decoder run two streams without a forked modeling file?
# 3. Why are the low-rank weights called w_gate, w_up and w_down rather than gate_proj and so on?
# 4. Which parity checks must hold exactly, and why does the mean fusion of a fresh model fail the last one?
# 5. How many trainable parameters does the specific stream add, as a formula in d, k and L?
# 6. What does 'low rank' mean for the specific MLP, in terms of singular values?
# 7. Why does beam search not work with the dual tower?
