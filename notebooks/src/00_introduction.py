# %%
META = {
    "title": "00 · Introduction: the same query, different askers",
    "goals": [
        "State the querier-aware problem: one responder, many queriers, the same query",
        "See a real base model (SmolLM2) ignore who is asking, and measure it",
        "Read the paper's two ideas from pictures: the dual tower and the querier-contrastive loss",
        "Know the road through notebooks 01-07, how to run them on Colab or locally, quick vs full mode",
    ],
    "time": "20-30 minutes of reading; the code runs in about a minute on a laptop CPU.",
    "hardware": "CPU is enough (quick mode); on a Colab GPU the full mode uses Qwen2.5-0.5B-Instruct.",
    "render": "all",
}

# %% [markdown]
# ## 1. The problem
#
# People do not answer a question; they answer *a person* asking a question. "Can you help me move
# this weekend?" gets one answer from your mother, another from your boss, another from your best
# friend. The paper this course follows (Zeng et al., *Querier-Aware LLM*, CIKM 2025,
# arXiv 2412.11736) opens with exactly this picture: "What is gene sequencing?" asked by a scientist
# is answered "order of nucleotides", asked by a child "the order of the basic blocks in a DNA".
#
# The vocabulary we use in every notebook:
#
# | term | meaning | example |
# |---|---|---|
# | **responder** *r* | the persona the model plays; one model per responder | Sheldon |
# | **querier** *q* | someone who talks to the responder | Leonard, Penny, Amy, ... |
# | **window** | a two-person dialogue (r and one q) that ends with r's turn | 3-8 turns, < 512 characters |
# | **query** | q's turn(s) just before r's final turn | "Can you help me?" |
# | **reply** | r's final turn: what the model must generate | |
#
# Earlier personalization work varied the *responder* (role-play: "answer as Sheldon"). Here the
# responder is fixed and the model must vary its answer with the **querier**. The only thing that
# tells the model who is asking is the **text**: every turn starts with the speaker's name.
#
# Let us see what a real pretrained chat model does with that. We give SmolLM2-135M-Instruct (quick
# mode; Qwen2.5-0.5B-Instruct in full mode) the same one-turn dialogue, changing only the asker's name.

# %%
import itertools
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from rouge_score import rouge_scorer

from qlearn.assets import load_lm
from qlearn.generation import generate_replies
from qlearn.template import render_dialogue, turn_format

torch.manual_seed(0)
pd.set_option("display.max_colwidth", 200)
t0 = time.perf_counter()
model, tokenizer = load_lm(MODEL)
fmt = turn_format(tokenizer)
print(f"{MODEL}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters on "
      f"{next(model.parameters()).device}, loaded in {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# The turn template ([docs/method.md](../docs/method.md) §6) is `<turn-start>{speaker}\n{text}<turn-end>\n`, with the
# tokenizer's own turn tokens (ChatML for SmolLM2 and Qwen). Where a chat template would write the
# *role* (`user`, `assistant`), we write the speaker's *name*. The prompt ends with the responder's
# open header, so the model continues as the responder:

# %%
RESPONDER_NAME = "Alex"
QUERY = "Can you help me move this weekend?"
QUERIERS = ["Mom", "Boss", "Best friend", "Little sister"]

prompts = [render_dialogue(fmt, [(q, QUERY)], next_speaker=RESPONDER_NAME) for q in QUERIERS]
print(prompts[0])

# %%
t0 = time.perf_counter()
replies = generate_replies(model, tokenizer, prompts, max_new_tokens=40, progress=False)
print(f"{len(prompts)} replies in {time.perf_counter() - t0:.1f} s (greedy decoding)")
pd.DataFrame({"querier": QUERIERS, f"{RESPONDER_NAME}'s reply": replies})

# %% [markdown]
# ### Measuring "do the replies depend on the asker?"
#
# Reading four replies is anecdote; a number is better. For every pair of queriers we compute the
# ROUGE-L F-score between their replies (1 = identical, 0 = nothing in common). A querier-aware
# responder would give *low* overlap for queriers it treats differently. We compare against a
# reference point: the overlap between replies to **different queries** from the same asker.

# %% figure=00_overlap
_scorer = rouge_scorer.RougeScorer(["rougeL"])


def overlap_matrix(texts):
    """Pairwise ROUGE-L F between texts (symmetric, diagonal = 1)."""
    n = len(texts)
    m = np.eye(n)
    for i, j in itertools.combinations(range(n), 2):
        m[i, j] = m[j, i] = _scorer.score(texts[i], texts[j])["rougeL"].fmeasure
    return m


def mean_offdiag(m):
    return float(m[~np.eye(len(m), dtype=bool)].mean())


OTHER_QUERIES = ["What did you think of the movie?", "Where are my keys?",
                 "Why were you late this morning?", "Do you like my new haircut?"]
other = generate_replies(model, tokenizer,
                         [render_dialogue(fmt, [("Mom", q)], RESPONDER_NAME) for q in OTHER_QUERIES],
                         max_new_tokens=40, progress=False)

same_query = overlap_matrix(replies)
fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for ax, m, labels, title in [
        (axes[0], same_query, QUERIERS, "same query, different queriers"),
        (axes[1], overlap_matrix(other), ["movie?", "keys?", "late?", "haircut?"],
         "same querier (Mom), different queries")]:
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_title(f"{title}\nmean off-diagonal ROUGE-L = {mean_offdiag(m):.2f}", fontsize=10)
fig.colorbar(im, ax=axes, shrink=0.8, label="ROUGE-L F")
plt.show()
print("different queriers, same query  :", round(mean_offdiag(same_query), 3))
print("same querier, different queries :", round(mean_offdiag(overlap_matrix(other)), 3))

# %% [markdown]
# Read the two numbers. A base chat model is trained to answer a *user*; the name in the header
# barely moves it, so replies to the same query from different queriers usually overlap about as much
# as, or more than, replies to *different* queries. The name is in the prompt, but the model has never
# been taught that it matters. (Your exact text may differ with the model version and hardware.)
#
# The paper's answer is not "write a better prompt" (its baselines RPG and QCG do that, notebook 05)
# but to **train** the responder on real two-person dialogues with many queriers, with an
# architecture and a loss that make the model keep track of who is asking.

# %% [markdown]
# ## 2. The paper's idea in two pictures
#
# ### Picture 1 — the dual tower (notebook 03)
#
# One pretrained decoder runs **two streams over the same tokens**. The *general* stream is the
# pretrained model with LoRA: it knows language and the responder's general style, learned from all
# queriers together. The *specific* stream shares the embeddings, the attention weights (and their
# LoRA) and the norms, but every layer's MLP is **replaced** by a small new low-rank SwiGLU. Both
# streams are normalized, **averaged**, and read out by the shared LM head. There are no per-querier
# weights: the specific stream has to learn querier-dependent behaviour from the names and turns in
# the text.

# %% figure=00_dual_tower
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

FROZEN, LORA, NEW, DATA = "#d9d9d9", "#9ecae1", "#fdae6b", "#ffffff"


def box(ax, x, y, w, h, text, color, fontsize=9, **kw):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                facecolor=color, edgecolor="black", linewidth=1, **kw))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize)


def arrow(ax, p, q, color="black", style="-|>", ls="-", text=None, **kw):
    ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=12, color=color,
                                 linestyle=ls, linewidth=1.2, **kw))
    if text:
        ax.text((p[0] + q[0]) / 2 + 0.1, (p[1] + q[1]) / 2, text, fontsize=8, color=color, va="center")


fig, ax = plt.subplots(figsize=(11, 8.5))
ax.set_xlim(0, 14)
ax.set_ylim(0, 12)
ax.axis("off")
box(ax, 1.5, 0.2, 8, 0.7, "<|im_start|>Penny\\nCan you help me?<|im_end|> <|im_start|>Sheldon\\n ...",
    DATA, fontsize=9)
box(ax, 3.5, 1.3, 4, 0.6, "token embeddings (frozen, shared)", FROZEN)
arrow(ax, (5.5, 0.9), (5.5, 1.3))
# the L decoder layers
ax.add_patch(Rectangle((0.6, 2.4), 9.8, 4.6, fill=False, linestyle="--", edgecolor="gray"))
ax.text(0.7, 6.75, f"× L decoder layers ({model.config.num_hidden_layers} in {MODEL})", fontsize=9, color="gray")
for x0, name in [(1.0, "general stream  h"), (6.0, "specific stream  s")]:
    ax.text(x0 + 1.9, 2.55, name, ha="center", fontsize=10, weight="bold")
    box(ax, x0, 3.1, 3.8, 1.0, "self-attention\n(pretrained q,k,v,o + LoRA)", LORA)
    arrow(ax, (x0 + 1.9, 1.9), (x0 + 1.9, 3.1))
box(ax, 1.0, 4.9, 3.8, 1.4, "pretrained SwiGLU MLP\n(frozen + LoRA on\ngate, up, down)", LORA)
box(ax, 6.0, 4.9, 3.8, 1.4, "NEW low-rank SwiGLU\n$W_{down}\\,(SiLU(W_{gate}x) \\odot W_{up}x)$\nrank k = 64, one per layer",
    NEW)
arrow(ax, (2.9, 4.1), (2.9, 4.9))
arrow(ax, (7.9, 4.1), (7.9, 4.9))
arrow(ax, (4.8, 3.6), (6.0, 3.6), style="<|-|>", text="")
ax.text(5.4, 3.85, "same\nweights", ha="center", fontsize=7.5)
box(ax, 1.0, 7.4, 3.8, 0.6, "norm (frozen)", FROZEN)
box(ax, 6.0, 7.4, 3.8, 0.6, "norm_specific (new, copy of norm)", NEW)
arrow(ax, (2.9, 6.3), (2.9, 7.4))
arrow(ax, (7.9, 6.3), (7.9, 7.4))
box(ax, 4.0, 8.6, 3.0, 0.7, "fuse: (h + s) / 2", DATA)
arrow(ax, (2.9, 8.0), (4.0, 8.95))
arrow(ax, (7.9, 8.0), (7.0, 8.95))
box(ax, 4.0, 9.8, 3.0, 0.6, "LM head (frozen, shared)", FROZEN)
arrow(ax, (5.5, 9.3), (5.5, 9.8))
box(ax, 3.5, 10.9, 4.0, 0.6, "next-token logits: Sheldon's reply", DATA)
arrow(ax, (5.5, 10.4), (5.5, 10.9))
# the training-only branch
box(ax, 10.9, 7.4, 2.9, 0.9, "norm_role_proj (new)\nmean over responder tokens", NEW, fontsize=8)
arrow(ax, (9.8, 6.9), (11.6, 7.4), ls="--", color="darkred")
box(ax, 10.9, 8.9, 2.9, 0.9, "z = querier-aware\nrepresentation", DATA, fontsize=8.5)
arrow(ax, (12.35, 8.3), (12.35, 8.9), color="darkred")
box(ax, 10.9, 10.4, 2.9, 0.9, "querier-contrastive loss\n(training only, Picture 2)", "#f4a582", fontsize=8.5)
arrow(ax, (12.35, 9.8), (12.35, 10.4), color="darkred")
handles = [Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="black") for c in (FROZEN, LORA, NEW)]
ax.legend(handles, ["frozen pretrained", "pretrained + trainable LoRA", "new, trained from scratch"],
          loc="lower right", fontsize=8.5)
ax.set_title("The dual-tower querier-aware model (paper §4, docs/method.md §4)", fontsize=12)
plt.show()

# %% [markdown]
# How small is the new part? The numbers below are counted from the model we just loaded
# (LoRA r = 16 on the seven projections, low-rank MLP of rank k = 64): a few percent of the model is
# trained, which is why the method fits a free Colab GPU.

# %%
cfg = model.config
d, L, k, r = cfg.hidden_size, cfg.num_hidden_layers, 64, 16
targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
lora = sum(r * (m.in_features + m.out_features) for name, m in model.named_modules()
           if name.split(".")[-1] in targets)
low_rank = 3 * d * k * L
total = sum(p.numel() for p in model.parameters())
pd.DataFrame({"parameters": [total, lora, low_rank, lora + low_rank + 2 * d]},
             index=["pretrained (frozen)", "LoRA r=16", f"low-rank MLPs 3·d·k·L (d={d}, k={k}, L={L})",
                    "trainable in total (+ 2 new norms)"]).assign(
    **{"% of pretrained": lambda t: (100 * t["parameters"] / total).round(2)})

# %% [markdown]
# ### Picture 2 — the querier-contrastive loss with clusters and views (notebooks 02 and 04)
#
# The LM loss alone teaches *what* the responder says; nothing forces the specific stream to encode
# *who is asking*. The paper adds a contrastive loss on the pooled specific-stream vector **z** of
# each training window:
#
# - **Clusters** (notebook 02). Queries are clustered by meaning (k-means on sentence embeddings).
#   Only queriers **inside the same cluster** compete: "is this Penny or Leonard?" is asked among
#   dialogues about the same kind of thing, so the model cannot win by recognizing the *topic*.
# - **Views**. Two linear projections per cluster map z to two 512-d "views" e1 and e2.
# - **Prototypes**. A memory keeps the last 512 projected vectors per (cluster, querier, view); a
#   querier's prototype is their mean. View 1 of a sample is scored against the view-2 prototypes of
#   every querier in its cluster (and vice versa), cosine / temperature, and a cross-entropy pulls
#   the sample towards its own querier's prototype and away from the others.
#
# The total loss is `L = L_LM + 0.5 · clip(L_QC, 0, 10)`. The sketch below uses made-up points, just
# to show the geometry; notebook 07 draws the real thing from a trained model.

# %% figure=00_contrastive_loss
rng = np.random.default_rng(0)
fig, (axl, axr) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1, 1.15]})
# left: the computation for one sample
axl.set_xlim(0, 10.2)
axl.set_ylim(0, 10)
axl.axis("off")
box(axl, 0.0, 4.3, 2.1, 1.4, "z of a window\nasked by Penny,\nin cluster c", DATA, fontsize=8)
box(axl, 2.9, 6.3, 1.9, 0.9, "view 1\n$P^1_c$: d→512", NEW, fontsize=8)
box(axl, 2.9, 2.8, 1.9, 0.9, "view 2\n$P^2_c$: d→512", NEW, fontsize=8)
arrow(axl, (2.1, 5.2), (2.9, 6.7))
arrow(axl, (2.1, 4.8), (2.9, 3.2))
box(axl, 5.5, 8.2, 4.3, 1.4, "memory, view 2, cluster c:\nlast 512 vectors of each querier\n→ prototypes $\\mu^2_{c,Penny}, \\mu^2_{c,Leonard}, ...$",
    FROZEN, fontsize=7.5)
box(axl, 5.5, 0.4, 4.3, 1.4, "memory, view 1, cluster c\n→ prototypes $\\mu^1_{c,q}$", FROZEN, fontsize=7.5)
box(axl, 5.4, 5.9, 4.6, 1.6, "cos(e1, $\\mu^2_{c,q}$) / T for every q\n→ softmax → CE(target = Penny)", "#f4a582",
    fontsize=8)
box(axl, 5.4, 2.5, 4.6, 1.6, "cos(e2, $\\mu^1_{c,q}$) / T for every q\n→ softmax → CE(target = Penny)", "#f4a582",
    fontsize=8)
arrow(axl, (4.8, 6.75), (5.4, 6.7))
arrow(axl, (4.8, 3.25), (5.4, 3.3))
arrow(axl, (7.65, 8.2), (7.65, 7.5))
arrow(axl, (7.65, 1.8), (7.65, 2.5))
axl.text(0.0, 9.6, "$L_{QC}$ = mean of the two CEs;\nthen e1, e2 are written into\nthe memories (no gradient)",
         fontsize=8, va="top", style="italic")
axl.set_title("one sample, one cluster", fontsize=11)
# right: the geometry in a cluster
axr.set_aspect("equal")
axr.axis("off")
colors = {"Penny": "tab:red", "Leonard": "tab:blue", "Amy": "tab:green"}
for (cx, cy, label), shift in zip([(0, 0, "cluster 1: plans and favours"), (6.5, 0, "cluster 2: science talk")],
                                  [0, 1]):
    axr.add_patch(plt.Circle((cx, cy), 2.9, fill=False, linestyle="--", edgecolor="gray"))
    axr.text(cx, cy + 3.2, label, ha="center", fontsize=9)
    for j, (name, c) in enumerate(colors.items()):
        ang = 2 * np.pi * (j + 0.5 * shift) / 3
        center = np.array([cx + 1.6 * np.cos(ang), cy + 1.6 * np.sin(ang)])
        pts = center + 0.35 * rng.standard_normal((12, 2))
        axr.scatter(pts[:, 0], pts[:, 1], s=12, color=c, alpha=0.6, label=name if shift == 0 else None)
        axr.scatter(*center, marker="*", s=260, color=c, edgecolor="black", zorder=3)
        if shift == 0 and name == "Penny":
            sample, own = center + np.array([0.9, 0.6]), center
    if shift == 0:  # a new Penny window: pulled to Penny's prototype, pushed from the others
        others = [np.array([1.6 * np.cos(2 * np.pi * j / 3), 1.6 * np.sin(2 * np.pi * j / 3)]) for j in (1, 2)]
        axr.scatter(*sample, s=90, facecolor="white", edgecolor="tab:red", linewidth=2, zorder=4)
        arrow(axr, sample, own, color="green")
        for o in others:
            arrow(axr, sample, sample + 0.2 * (sample - o), color="darkred", ls="--")
axr.set_xlim(-3.5, 10)
axr.set_ylim(-3.5, 4)
axr.scatter([], [], marker="*", s=150, color="gray", edgecolor="black", label="prototype (memory mean)")
axr.scatter([], [], s=60, facecolor="white", edgecolor="tab:red", label="new Penny window")
axr.legend(loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.12))
axr.set_title("pull towards own querier's prototype (green), away from the others (red),\n"
              "only within the same cluster", fontsize=10)
plt.show()

# %% [markdown]
# At inference none of this runs: no querier id, no cluster id, no memory. The model only reads the
# dialogue. The contrastive loss shaped the specific stream during training so that *the text
# of the dialogue* (names, how the querier talks) leads to querier-specific representations.

# %% [markdown]
# ## 3. The road through the course
#
# | notebook | what you do | quick mode (CPU) | full mode |
# |---|---|---|---|
# | **00 introduction** (this one) | the problem, the ideas, set-up | ~1 min | any |
# | **01 dataset construction** | scripts and chats → chunks → two-person segments → windows → MQDialog | seconds | CPU |
# | **02 question clustering** | embed queries, choose k, inspect clusters, UMAP by cluster and querier | ~1 min | CPU |
# | **03 low-rank specific encoder** | build the dual tower step by step on SmolLM2, check generation | ~1-2 min | any GPU |
# | **04 contrastive training** | the loss on toy vectors, then a real training run, loss curves, probe | ~2 min | Colab T4 |
# | **05 evaluation and baselines** | ROUGE-L, BLEU, judge win rate; zero-shot, FT, RPG, few-shot, QCG | ~3 min | Colab T4 |
# | **06 ablations** | w/o low-rank, clustering, multi-view, contrastive; the planted benchmark; sweeps | ~5 min | Colab T4 (hours) |
# | **07 querier embeddings** | the signature notebook: UMAP of querier representations, prototypes, cold start, interactive panel | ~3-4 min | Colab T4 |
#
# **What the evidence shows so far** (notebook 06 has the tables). On the planted-signal benchmark,
# where the right reply depends on who asks, the dual tower answers with the asker's opener no more
# often than plain LoRA fine-tuning after 60 steps: asker-fit 38.0% [30.3, 45.3] for the method vs
# 36.7% [29.0, 44.3] for FT (chance 25%, three seeds, 100 unseen (query, asker) pairs, paired
# p = 0.82). With the names hidden, so that the asker must be recognised from how they write,
# every shared model stays at chance (Ours 25.7% [20.7, 31.0], FT 28.3% [21.0, 35.7]). On real scripts (*Friends* / Ross, SmolLM2-135M, 300 steps per system, 200 test
# windows) the method ties with FT too: ROUGE-L 8.83 [7.27, 10.54] vs 8.32 [6.43, 10.55] (paired
# p = 0.56, two seeds each), and a classifier cannot tell the asker from either model's replies.
# The course teaches the method *and* how to test it; at CPU scale the test says the
# querier-aware mechanisms have not yet earned their keep.
#
# The library `qlearn` holds everything the notebooks build, so a notebook can stay about ideas:
# `qlearn.data` (01), `qlearn.cluster` and `qlearn.viz` (02), `qlearn.model` (03),
# `qlearn.contrastive`, `qlearn.collate`, `qlearn.train` (04), `qlearn.evaluate` (05, 06).
# The whole pipeline also runs as one command: `qlearn demo --out runs/demo`.

# %% [markdown]
# ## 4. Set-up
#
# **On Colab.** Click the badge at the top of a notebook; the notebooks that train ask Colab for a
# T4 GPU runtime (otherwise choose *Runtime → Change runtime type → T4 GPU*). Run the cells in order.
# The first code cell clones qlearn and installs it with pip; Colab already has torch, transformers,
# scikit-learn and matplotlib, so only the rest is added. The TV transcripts are not shipped (they
# are copyrighted): the notebooks that read them have a data cell that downloads the public source
# files (pinned, sha256-checked) when `QLEARN_DATA_ROOT` is not set. The real-person chats
# (`chitchat-dataset`) install with pip. The notebooks that train have an optional cell that mounts
# Google Drive, so that checkpoints survive a disconnect.
#
# **Locally** (Linux or macOS, Python ≥ 3.10, no GPU needed):
#
# ```bash
# git clone https://github.com/{{GITHUB_SLUG}} && cd qlearn
# make setup                      # .venv with qlearn, torch (CPU), SmolLM2-135M and MiniLM offline
# export QLEARN_DATA_ROOT=/path/to/transcripts   # optional: else the notebooks download them
# make lab                        # JupyterLab on notebooks/ (installs the `notebooks` extra once)
# ```
#
# **Running every notebook as a test**: `pytest --nbmake notebooks/` executes each notebook top to
# bottom in quick mode (this is what CI does).

# %% [markdown]
# ## 5. Quick mode and full mode
#
# Every notebook starts with the same *parameters* cell (above, tagged `parameters`):
#
# - `QUICK = True` when there is no GPU (or when `QLEARN_QUICK=1`): the small model
#   (SmolLM2-135M-Instruct; offline its weights are a Q4_1 GGUF dequantised to fp32, so slightly
#   degraded; `MODEL = "smollm2-135m-hub"` loads the original ones where the hub is reachable), little
#   data, a few dozen training steps. Everything finishes in minutes
#   on a CPU and the *shapes* of the results are right, but the numbers are not the paper's.
# - `QUICK = False` on a GPU (or `QLEARN_QUICK=0`): a larger model (Qwen2.5-0.5B-Instruct by
#   default, any Llama/Qwen2-style chat model works), full datasets and longer training.
#
# Override either by editing the cell, by the environment variable, or with papermill:
# `papermill in.ipynb out.ipynb -p QUICK False -p MODEL Qwen/Qwen2.5-1.5B-Instruct`.
# Long steps follow one rule: **load the checkpoint if it exists, else train** — re-running a
# notebook after a Colab disconnect does not redo finished training.

# %%
device = next(model.parameters()).device
print(f"QUICK = {QUICK}   MODEL = {MODEL!r}   RESPONDER = {RESPONDER!r}   device = {device}")
print("CUDA available:", torch.cuda.is_available())

# %% [markdown]
# ## 6. Exercise: does context reveal the asker?
#
# The name alone did not move the base model much. Real dialogues carry more than the name: earlier
# turns show *how* this querier talks and what they are to the responder. Give each querier one
# earlier exchange that reveals the relationship (for example Mom: "It's your mother, dear. Did you
# eat today?" → Alex: "Yes, Mom."), then ask the same `QUERY` again.
#
# 1. Build the prompts with `render_dialogue(fmt, turns, next_speaker=RESPONDER_NAME)`.
# 2. Generate the replies and put them in a table.
# 3. Compute the mean pairwise overlap with `overlap_matrix` / `mean_offdiag`. Is it lower than with
#    the name alone? What does that tell you about what a *trained* querier-aware model can use?

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# history = {
#     "Mom": [("Mom", "It's your mother, dear. Did you eat today?"), (RESPONDER_NAME, "Yes, Mom.")],
#     "Boss": [("Boss", "The quarterly report is due Monday."), (RESPONDER_NAME, "It will be ready.")],
#     "Best friend": [("Best friend", "Dude! Pizza at my place later?"), (RESPONDER_NAME, "Always.")],
#     "Little sister": [("Little sister", "You promised to drive me to practice!"),
#                       (RESPONDER_NAME, "I know, I know.")],
# }
# ctx_prompts = [render_dialogue(fmt, history[q] + [(q, QUERY)], next_speaker=RESPONDER_NAME)
#                for q in QUERIERS]
# ctx_replies = generate_replies(model, tokenizer, ctx_prompts, max_new_tokens=40, progress=False)
# display(pd.DataFrame({"querier": QUERIERS, "reply with context": ctx_replies}))
# print("name only   :", round(mean_offdiag(overlap_matrix(replies)), 3))
# print("with context:", round(mean_offdiag(overlap_matrix(ctx_replies)), 3))
# ```
#
# Usually the overlap drops: the context changes the reply far more than the name. That is the
# signal a querier-aware model learns to exploit. The paper's model sees exactly such windows (the
# querier's own earlier turns plus the names) and is trained so that the *specific stream* turns
# them into a representation of who is asking (notebook 07 shows those representations).
# </details>

# %% [markdown]
# ## Summary
#
# - The task: one **responder**, many **queriers**; the same query should get querier-appropriate
#   replies. The querier reaches the model only through the dialogue text.
# - A pretrained chat model does not do this by itself: with only the name changed, its replies to
#   the same query overlap about as much as replies to different queries (measured above).
# - The paper trains a **dual tower**: a general stream (pretrained + LoRA) and a querier-specific
#   stream (shared attention, new low-rank MLPs), averaged before the LM head — a few percent of the
#   parameters are trained.
# - A **querier-contrastive loss** with per-cluster **views** and memory **prototypes** makes the
#   specific stream separate queriers, comparing only dialogues about similar queries.
# - Next: notebook 01 builds the dialogue windows from TV scripts and real chats.

# %% [markdown]
# ## Questionnaire
#
# Answer in a sentence or two each, without looking back if you can; then check the
# notebook (teachers: answer notes are in `docs/teaching_guide.md`).
#
# 1. Define responder, querier, window, query and reply in your own words.
# 2. How does the model learn who is asking, given that no querier id is passed to it?
# 3. What did the two overlap numbers of section 1 measure, and what would a querier-aware responder change in them?
# 4. Which parts of the dual tower are shared by the two streams, and which part is new?
# 5. Why are queriers compared only inside a query cluster?
# 6. What is a prototype in the contrastive loss, and where is it kept?
# 7. What runs at inference time, and what runs only during training?
