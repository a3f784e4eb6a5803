# %%
META = {
    "title": "04 · Querier-contrastive training with multi-view augmentation",
    "goals": [
        "Build the querier-contrastive loss by hand on toy vectors: views, prototypes, memories, clusters",
        "See why only queriers of the same cluster compete, and what the temperature and the views do",
        "Read a training batch: which tokens carry the LM loss, which are pooled into the querier vector",
        "Train the dual-tower model with L = L_LM + λ·L_QC, read the loss curves and the querier probe",
    ],
    "time": "45 minutes; quick mode trains SmolLM2-135M for 20 short steps (a few minutes on a laptop CPU).",
    "hardware": "CPU is enough (quick mode); full mode trains Qwen2.5-0.5B-Instruct on one Colab T4.",
    "model": "smollm2-135m",
    "full_model": "Qwen/Qwen2.5-0.5B-Instruct",
    "responder": "Rachel",
    "data": True,
    "trains": True,
    "gpu": True,
    "render": "all",
}

# %% [markdown]
# ## 1. What the loss must do
#
# Notebook 03 built the dual tower: a general stream and a querier-*specific* stream over the same
# tokens. Nothing so far forces the specific stream to care about *who is asking*. The paper adds a
# second loss for that, the **querier-contrastive loss** `L_QC`:
#
# * every training window gives one vector **z**: the specific stream's last hidden states, averaged
#   over the responder's tokens (`QuerierAwareLM(...).querier_repr`);
# * windows of the **same querier** should have similar z, windows of different queriers dissimilar
#   ones, *but only among windows whose queries are alike* (the same **cluster** from notebook 02).
#
# The official code does not compare windows with each other directly. It keeps, for every
# (cluster, querier), a **memory** of the last K vectors and compares each new window with the
# memories' means, the **prototypes**. Before comparing, z goes through two random linear maps per
# cluster, the **views**; view 1 of a window is matched against the view-2 prototypes and vice versa.
#
# qlearn adds one step the official code lacks: **centering**. A language model's pooled states
# are *anisotropic*: any two windows' vectors have a cosine near 0.99 (SmolLM2), so every cosine
# with every prototype is ~1 and the loss cannot tell queriers apart for hundreds of steps.
# Subtracting a running mean of z (`contrastive.qc_center: true` in a recipe, momentum 0.9, as DINO
# centres its teacher) leaves only what differs between windows. `false` gives the official loss.
#
# `qlearn.contrastive.QuerierContrastiveLoss` is all of that in ~100 lines. We start with 2-D toys.

# %%
import json
import math
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from qlearn.contrastive import QuerierContrastiveLoss

torch.manual_seed(0)
qc = QuerierContrastiveLoss(dim=2, n_queriers=3, n_clusters=1, n_views=2, view_dim=2,
                            memory_size=4, temperature=0.5).eval()  # eval: no memory writes
print(qc)
print("views: weight", tuple(qc.weight.shape), "(cluster, view, out, in); memory", tuple(qc.memory.shape),
      "(cluster, querier, view, slot, dim)")

# %% [markdown]
# ### Empty memories
#
# At the start every memory is empty and every prototype is the same constant vector, so the
# softmax over queriers is uniform and the loss is exactly `log N`, whatever z is:

# %%
z = torch.tensor([[1.0, 0.0]])
print(f"loss = {qc(z, torch.tensor([0]), torch.tensor([0])).item():.4f}   log 3 = {math.log(3):.4f}")

# %% [markdown]
# ### Prototypes
#
# We make the views simple so we can follow by hand: view 0 is the identity, view 1 swaps the two
# coordinates. Then we write a few (already projected) vectors into the memories of queriers 0
# and 1; querier 2 stays empty.

# %%
with torch.no_grad():
    qc.weight[0, 0] = torch.eye(2)
    qc.weight[0, 1] = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
# rows: one sample each, [view-0 vector, view-1 vector]
e = torch.tensor([[[0.0, 1.0], [1.0, 0.0]],
                  [[0.0, 1.0], [1.0, 2.0]],
                  [[1.0, 0.0], [0.0, 3.0]]])
qc.write(e, querier=torch.tensor([0, 0, 1]), cluster=torch.tensor([0, 0, 0]))
protos = qc.prototypes()[0]  # [querier, view, dim]
print("filled slots per querier:", qc.count[0].tolist())
print(pd.DataFrame({f"view {v}": [protos[n, v].tolist() for n in range(3)] for v in range(2)},
                   index=["querier 0", "querier 1", "querier 2 (empty)"]))

# %% [markdown]
# ### The loss, step by step
#
# For z = (1, 0) of querier 0: e₀ = (1, 0), e₁ = (0, 1). View 0 is compared with the view-1
# prototypes, view 1 with the view-0 prototypes; cosine similarity divided by the temperature T
# gives the logits; the cross-entropy with the true querier is averaged over the two directions.

# %%
e0, e1 = qc.project(z, torch.tensor([0]))[0].detach()
T = qc.temperature
logits_01 = F.cosine_similarity(e0[None], protos[:, 1], dim=-1) / T
logits_10 = F.cosine_similarity(e1[None], protos[:, 0], dim=-1) / T
by_hand = (F.cross_entropy(logits_01[None], torch.tensor([0])) +
           F.cross_entropy(logits_10[None], torch.tensor([0]))) / 2
print("logits view0 -> view1 prototypes:", logits_01.numpy().round(3))
print("logits view1 -> view0 prototypes:", logits_10.numpy().round(3))
print(f"by hand {by_hand.item():.5f}   module {qc(z, torch.tensor([0]), torch.tensor([0])).item():.5f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
for ax, (v, w, ev) in zip(axes, [(0, 1, e0), (1, 0, e1)]):
    for n, color in zip(range(3), ["C0", "C1", "C2"]):
        p = F.normalize(protos[n, w], dim=0)
        ax.arrow(0, 0, p[0].item(), p[1].item(), color=color, width=0.01, label=f"prototype q{n}")
    ev = F.normalize(ev, dim=0)
    ax.arrow(0, 0, ev[0].item(), ev[1].item(), color="k", width=0.02, label=f"e{v} (querier 0)")
    ax.set(xlim=(-0.2, 1.2), ylim=(-0.2, 1.2), aspect="equal", title=f"view {v} vs view-{w} prototypes")
    ax.legend(fontsize=7, loc="lower left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Clusters restrict the scope
#
# Memories are kept per cluster, and a window only meets the prototypes of its own cluster. A
# querier who never asked this kind of question is not a competitor (its prototype is the constant
# "empty" one). With one cluster (`n_clusters=1`, the "w/o clustering" ablation) everybody competes.

# %%
qc2 = QuerierContrastiveLoss(dim=2, n_queriers=3, n_clusters=2, view_dim=2, memory_size=4,
                             temperature=0.5).eval()
with torch.no_grad():
    qc2.weight.copy_(qc.weight.expand(2, -1, -1, -1))
qc2.write(e, torch.tensor([0, 0, 1]), torch.tensor([0, 0, 0]))  # the same memories, cluster 0
before = qc2(z, torch.tensor([0]), torch.tensor([0])).item()
qc2.write(torch.randn(6, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2]), torch.ones(6, dtype=torch.long))
after = qc2(z, torch.tensor([0]), torch.tensor([0])).item()
print(f"cluster-0 loss before / after filling cluster 1: {before:.5f} / {after:.5f} (unchanged)")
print(f"the same z in cluster 1: {qc2(z, torch.tensor([0]), torch.tensor([1])).item():.5f}")

# %% [markdown]
# ## 2. The loss trains an encoder (toy)
#
# Before the real model, a toy: 4 "queriers" whose 16-D inputs overlap, a small encoder trained
# *only* with `L_QC`, the memories written after each step (train mode). The k-NN probe asks: from
# the encoder's vector, can we tell which querier it came from? That is the number we will also
# report for the real model.

# %%
from qlearn.train import knn_probe

g = torch.Generator().manual_seed(0)
centers = torch.randn(4, 16, generator=g)


def toy_batch(n, gen):
    y = torch.randint(0, 4, (n,), generator=gen)
    return centers[y] + 1.5 * torch.randn(n, 16, generator=gen), y


def toy_run(temperature=0.1, n_views=2, views_trainable=True, steps=150):
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 32))
    loss_fn = QuerierContrastiveLoss(dim=32, n_queriers=4, n_views=n_views, view_dim=16,
                                     memory_size=64, temperature=temperature,
                                     views_trainable=views_trainable).train()
    opt = torch.optim.AdamW([*enc.parameters(), *loss_fn.parameters()], lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    x_test, y_test = toy_batch(200, torch.Generator().manual_seed(2))
    with torch.no_grad():
        probe_before = knn_probe(enc(x_test).numpy(), y_test.numpy())["accuracy"]
    losses = []
    for _ in range(steps):
        x, y = toy_batch(16, gen)
        loss = loss_fn(enc(x), y, torch.zeros_like(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        probe_after = knn_probe(enc(x_test).numpy(), y_test.numpy())["accuracy"]
    return losses, probe_before, probe_after


losses, pb, pa = toy_run()
plt.figure(figsize=(5, 3))
plt.plot(losses)
plt.axhline(math.log(4), ls="--", c="gray", label="log 4 (empty memories)")
plt.xlabel("step"), plt.ylabel("L_QC"), plt.legend(), plt.title("toy encoder trained with L_QC only")
plt.show()
print(f"k-NN probe accuracy: before {pb:.2f}, after {pa:.2f} (chance 0.25)")

# %% [markdown]
# ## 3. A training batch
#
# `qlearn.collate.Collator` renders a window with the tokenizer's own turn tokens and the speaker's
# name on every turn. The LM loss covers the responder's content and end-of-turn tokens only; the
# querier vector averages the responder's name and content tokens. An invented dialogue:

# %%
from qlearn.assets import load_tokenizer
from qlearn.collate import IGNORE, Collator
from qlearn.data import Window

tokenizer = load_tokenizer(MODEL)
window = Window(id="toy", responder="Olek", querier="Marta", role_pair_id=2, cluster_id=0,
                turns=[("Marta", "Did you water the ferns?"), ("Olek", "Twice."),
                       ("Marta", "Ferns are always thirsty!"), ("Olek", "Then I will buy a bigger can.")])
collator = Collator(tokenizer)
f = collator.encode(window)
table = pd.DataFrame({"token": tokenizer.convert_ids_to_tokens(f["input_ids"]),
                      "LM label": [lab != IGNORE for lab in f["labels"]],
                      "pooled": [bool(m) for m in f["responder_mask"]]})
print("querier index", f["querier"], "cluster", f["cluster"])
table.T

# %% [markdown]
# ## 4. The real run: L = L_LM + λ·L_QC
#
# `qlearn.train.train(TrainConfig)` builds the responder's windows (notebook 01), clusters their
# queries (notebook 02), wraps the base model in the dual tower (notebook 03), and trains with
# transformers' `Trainer` — mixed precision, gradient accumulation, checkpointing and resuming
# come from there. Each step writes the views' outputs into the memories; every checkpoint holds
# the memories, so `--resume` continues exactly.
#
# Quick mode uses `configs/quick-cpu.yaml` (SmolLM2-135M, 4 queriers, 2 clusters, 20 steps); full mode
# `configs/colab-t4.yaml` (Qwen2.5-0.5B-Instruct, fp16). On Colab, point `RUN_DIR` at Google Drive:
# the cell below **loads the run if it has finished, resumes it if it stopped, else trains it**.

# %%
from qlearn.train import TrainConfig, plot_metrics, read_metrics, train

RECIPE = "quick-cpu.yaml" if QUICK else "colab-t4.yaml"
RUN_DIR = RUNS / f"04_{RESPONDER}_{'quick' if QUICK else 'full'}"  # RUNS: the Drive cell at the top
cfg = TrainConfig.from_yaml(REPO / "configs" / RECIPE, [
    f"source={SOURCE}", f"responder={RESPONDER}", f"base_model={MODEL}", f"output_dir={RUN_DIR}"])

t0 = time.perf_counter()
if (RUN_DIR / "final" / "qlearn_config.json").exists():
    print(f"{RUN_DIR} has finished: loading its results")
else:
    resume = any(RUN_DIR.glob("checkpoint-*"))
    print("resuming" if resume else "training", "->", RUN_DIR)
    train(cfg, resume=resume)
print(f"{time.perf_counter() - t0:.0f} s")

# %% [markdown]
# ### Loss curves
#
# `metrics.jsonl` holds one line per logging step. `L_QC` starts at `log N` (empty memories), may
# jump once the first prototypes exist, and then falls as the specific stream and the views learn
# to separate the queriers. `L_LM` first repairs the damage of the randomly initialised specific
# stream (the fused logits are the mean of both streams), then learns the responder.

# %% figure=04_loss_curves
rows = read_metrics(RUN_DIR / "metrics.jsonl")
print(pd.DataFrame(rows)[["step", "loss_lm", "loss_qc", "lr"]].iloc[[0, 1, -2, -1]])
plot_metrics(RUN_DIR / "metrics.jsonl")
plt.show()

# %% [markdown]
# ### The querier probe
#
# For held-out test windows (taken round-robin over queriers), the probe pools the querier vector
# and asks a k-NN classifier (leave-one-out, cosine) which querier asked. "chance" is the share of
# the most frequent querier. The vector is *teacher-forced*: it sees the whole window, names
# included, so even the untrained model is above chance; training should raise the accuracy.

# %%
probe = json.loads((RUN_DIR / "probe.json").read_text())
pd.DataFrame({k: probe[k] for k in ("before", "after")}).T

# %% [markdown]
# ## 5. Exercises
#
# **Exercise 1.** In the toy of section 1, what is the loss for z = (0, 1) of querier 1? Work it out
# by hand (cosines, divide by T = 0.5, cross-entropy), then check with `qc`.

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# z1 = torch.tensor([[0.0, 1.0]])   # e0 = (0, 1), e1 = (1, 0)
# # view 0 vs view-1 prototypes (1,1), (0,3), uniform: cos = 1/√2, 1, 1/√2 -> logits √2, 2, √2
# # view 1 vs view-0 prototypes (0,1), (1,0), uniform: cos = 0, 1, 1/√2   -> logits 0, 2, √2
# r2 = math.sqrt(2)
# ce1 = -2 + math.log(2 * math.exp(r2) + math.exp(2))
# ce2 = -2 + math.log(1 + math.exp(2) + math.exp(r2))
# print((ce1 + ce2) / 2, qc(z1, torch.tensor([1]), torch.tensor([0])).item())
# ```
# </details>

# %% [markdown]
# **Exercise 2.** Rerun the toy of section 2 with temperature 1.0 instead of 0.1, with one view
# instead of two (`n_views=1`, the "w/o multi-view" ablation), and with frozen views
# (`views_trainable=False`, as in the released code). Compare the final losses and the probe.

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# for kw in [{}, {"temperature": 1.0}, {"n_views": 1}, {"views_trainable": False}]:
#     losses, pb, pa = toy_run(**kw)
#     print(kw, f"last L_QC {np.mean(losses[-20:]):.3f}  probe {pb:.2f} -> {pa:.2f}")
# ```
# With T = 1 the logits lie in [-1, 1]: the loss cannot fall far below log 4 even when the
# queriers are perfectly separated, so the gradient stays weak. One view still works on this toy
# (the views are only a cheap augmentation); frozen random views still train the encoder, because
# the gradient flows through them to z.
# </details>

# %% [markdown]
# **Exercise 3.** A Colab session dies after 150 steps of the full run. What do you run to lose at
# most the steps since the last checkpoint, and what in the checkpoint makes the resumed run equal
# to an uninterrupted one?

# %% [markdown]
# <details><summary>Solution</summary>
#
# The same command with `--resume` (or this notebook's training cell again, which resumes when it
# finds `checkpoint-*` folders):
# `qlearn train --config configs/colab-t4.yaml --set output_dir=/content/drive/MyDrive/qlearn/run --resume`.
# A checkpoint holds the trainable weights, the optimizer and scheduler states, the RNG states, the
# data position (`trainer_state.json`) and `contrastive.safetensors`: the views *and the memories*.
# Without the memories the prototypes would restart empty and `L_QC` would jump back to `log N`.
# `tests/test_train.py` checks that a run stopped at step 3 and resumed ends with the same weights,
# memories and losses as an uninterrupted one.
# </details>

# %% [markdown]
# ## Summary
#
# * `L_QC` compares each window's vector, through two views, with per-(cluster, querier) prototypes
#   kept in FIFO memories; only queriers of the same cluster compete; it starts at log N.
# * The LM loss covers the responder's turns only; the querier vector pools the responder's tokens.
# * `qlearn train --config FILE [--set k=v] [--resume]` trains on CPU, one GPU or many
#   (`accelerate launch -m qlearn.cli train ...`); the run folder holds `metrics.jsonl`,
#   `loss_curves.png`, `probe.json` and `final/`. Notebook 05 evaluates the trained model.

# %% [markdown]
# ## Questionnaire
#
# Answer in a sentence or two each, without looking back if you can; then check the
# notebook (teachers: answer notes are in `docs/teaching_guide.md`).
#
# 1. What is the value of L_QC when all memories are empty, and why?
# 2. What is a view, and what is matched against what in the two-view loss?
# 3. How do clusters restrict which queriers compete?
# 4. Which tokens carry the LM loss, and which tokens are pooled into the querier vector z?
# 5. Why does qlearn centre z before the views, and what does contrastive.qc_center=false reproduce?
# 6. What must a checkpoint hold for a resumed run to equal an uninterrupted one?
# 7. What does the k-NN probe measure, and why is the untrained model already above chance?
