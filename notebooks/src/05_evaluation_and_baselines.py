# %%
META = {
    "title": "05 · Evaluation and baselines: what the numbers see, and what they miss",
    "goals": [
        "Compute ROUGE-L and BLEU by hand and with the libraries, in English and in Chinese, and explain why the paper's ROUGE-L differs from the textbook one",
        "Put a confidence interval on every score and test whether two systems really differ",
        "Build the paper's prompting baselines (Zero-shot, RPG, Few-shot, QCG) and run them on the same windows",
        "Judge two systems with an LLM in both orders, and measure whether replies depend on who asks",
    ],
    "time": "45 minutes; quick mode runs in about 5 minutes on a laptop CPU.",
    "hardware": "CPU is enough for quick mode (SmolLM2-135M, six windows); full mode wants a GPU (Colab T4).",
    "responder": "Ross",
    "data": True,
    "gpu": True,
}

# %% [markdown]
# ## 0. Why evaluation deserves a notebook
#
# The paper reports ROUGE-L, BLEU and GPT-4 win rates. Each number answers a narrow question:
# *how many words of the real reply does the generated one share, in order?* A reply can be
# perfect in character and score 0, or be bland and score well. Before we compare systems, we look
# at what each metric actually computes — including two traps that silently change the numbers:
#
# * Google's `rouge-score` deletes every non-ASCII character, so **Chinese scores 0** unless the
#   tokenizer is replaced;
# * the official scripts use the PyPI `rouge` package, whose ROUGE-L is **set-based**
#   ("summary-level union LCS" over unique tokens), not the textbook LCS.
#
# `qlearn.evaluate` exposes both: `rouge_l(preds, refs, lang, variant="rouge-score" | "paper")`.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from qlearn.evaluate import bleu, bootstrap_ci, distinct_n, paired_test, rouge_l, rouge_l_scores

# %% [markdown]
# ## 1. ROUGE-L by hand
#
# ROUGE-L compares the **longest common subsequence** (LCS) of prediction and reference: words in
# the same order, gaps allowed. With LCS length $L$, prediction length $m$ and reference length $n$:
# $P = L/m$, $R = L/n$, $F = 2PR/(P+R)$. We always report $F \times 100$.
#
# *the cat sat on the mat* vs *the cat is on the mat*: LCS = *the cat on the mat* (5 words), so
# $P = R = 5/6$ and $F = 83.3$.

# %% publish
def lcs(a, b):
    """Length of the longest common subsequence (dynamic programming)."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


pred, ref = "the cat sat on the mat", "the cat is on the mat"
L = lcs(pred.split(), ref.split())
p, r = L / len(pred.split()), L / len(ref.split())
print("by hand:", 100 * 2 * p * r / (p + r), " qlearn:", rouge_l([pred], [ref]))

# %% [markdown]
# ## 2. What the metrics see, and what they miss
#
# A few replies to one reference, in English and in Chinese. Look at each row and decide whether
# you agree with the numbers.

# %% publish
examples = [  # (language, reference, prediction, what it shows) — all invented
    ("en", "I can't, I have to work late tonight.", "I can't, I have to work late tonight.", "identical"),
    ("en", "I can't, I have to work late tonight.", "Sorry, the office needs me until ten.", "same meaning, other words"),
    ("en", "I can't, I have to work late tonight.", "I have to I have to I have to.", "degenerate repetition"),
    ("en", "I can't, I have to work late tonight.", "i CAN'T i have to work late tonight", "case and punctuation"),
    ("zh", "今天我很开心。", "我今天很高兴。", "same meaning, characters reordered"),
    ("zh", "掌柜的，你别生气了。", "掌柜的别生气", "shorter, same characters"),
    ("zh", "掌柜的，你别生气了。", "好的", "unrelated"),
]
rows = []
for lang, ref, pred, what in examples:
    rows.append({"what": what, "lang": lang,
                 "ROUGE-L": rouge_l([pred], [ref], lang),
                 "ROUGE-L (paper)": rouge_l([pred], [ref], lang, variant="paper"),
                 "BLEU-1": bleu([pred], [ref], lang, n=1),
                 "BLEU-4": bleu([pred], [ref], lang, n=4)})
pd.DataFrame(rows).round(1)

# %% [markdown]
# What to notice:
#
# * **Paraphrases score near 0.** Neither metric knows that *the office needs me until ten* means
#   *I have to work late*. This is why the paper's absolute numbers are small (5–20) and why a judge
#   model is used as well.
# * **Repetition is rewarded** by the paper variant: it counts *unique* tokens, so repeating
#   *I have to* costs nothing in precision. The textbook variant penalises the extra words.
# * **Case and punctuation**: `rouge-score` lower-cases and drops punctuation; the `rouge` package
#   splits on spaces only, so `CAN'T` ≠ `can't,` and `tonight.`≠ `tonight`.
# * **BLEU-4 is 0** for most single short replies: without smoothing (as in the official script), one
#   missing 4-gram makes the geometric mean 0. Corpus BLEU over many windows is less brittle.
#
# And the Chinese trap, in one line:

# %% publish
from rouge_score import rouge_scorer

default = rouge_scorer.RougeScorer(["rougeL"]).score("今天我很开心", "我今天很高兴")["rougeL"].fmeasure
print("rouge-score's own tokenizer:", default, "  qlearn (per character):", rouge_l(["我今天很高兴"], ["今天我很开心"], "zh"))

# %% [markdown]
# **Distinct-n** looks only at the predictions: the share of unique n-grams. It catches a system
# that says the same safe thing to everybody, which ROUGE-L cannot see.

# %% publish
print("varied:", distinct_n(["Sure, see you at eight.", "No way, I'm busy.", "Ask Monica first."], 2))
print("bland :", distinct_n(["I don't know.", "I don't know.", "I don't know, really."], 2))

# %% [markdown]
# ## 3. How sure are we? Confidence intervals and paired tests
#
# A test split holds a few hundred windows; per-window ROUGE-L is very noisy (most windows score
# 0–10, a few score 50). **Bootstrap**: resample the windows with replacement many times and look
# at the spread of the mean. **Paired test**: two systems answered the *same* windows, so compare
# them window by window (a sign-flip permutation test on the differences).

# %% publish
import numpy as np

rng = np.random.default_rng(0)
a = rng.gamma(1.0, 7.0, size=200)          # per-window scores of a system A (simulated)
b = a + rng.normal(0.6, 2.5, size=200)      # B: 0.6 better on average, lots of noise
for n in (20, 50, 200):
    print(f"n={n:3d}  A {bootstrap_ci(a[:n])}  B {bootstrap_ci(b[:n])}  B-A {paired_test(b[:n], a[:n])}")

# %% [markdown]
# With 20 windows the intervals overlap widely and the paired test cannot tell the systems apart;
# with 200 it can (p < 0.05), even though the unpaired intervals still overlap almost entirely. **Always report the interval,
# and compare systems with a paired test** — the paper reports neither.
#
# ## 4. The data and the windows every system will answer

# %%
from qlearn.data import build_dataset
from qlearn.train import keep_top_queriers

ds = keep_top_queriers(build_dataset(SOURCE, RESPONDER), 4)
N = 6 if QUICK else 200
from qlearn.evaluate.ablate import subset

windows = subset(ds.test, N, seed=0)
print(ds, "->", len(windows), "test windows;", "queriers:", ds.queriers)

# %% [markdown]
# ## 5. The prompting baselines
#
# The paper compares against four systems that need no training of ours (FT, the fifth, is a plain
# LoRA fine-tune; see notebook 06). All use the same turn template as the trained model; they differ
# only in a **system turn** put before the dialogue:
#
# | system | system turn |
# |---|---|
# | Zero-shot | none |
# | RPG | a responder profile we wrote (`qlearn/resources/profiles/<responder>.md`) |
# | Few-shot | the 5 training dialogues most similar to this window (MiniLM) |
# | QCG | a profile of the *querier*, built from the training data |
#
# Here is what each prompt looks like for one window (the dialogue part is identical):

# %%
from qlearn.assets import load_embedder, load_lm
from qlearn.evaluate.baselines import PROMPT_BASELINES, baseline_replies, build_prompts

model, tok = load_lm(MODEL)
embedder = load_embedder("minilm")
zero = build_prompts("Zero-shot", tok, windows[:1])[0]
print("===== the dialogue every system sees:\n" + zero)
for system in PROMPT_BASELINES[1:]:
    prompt = build_prompts(system, tok, windows[:1], ds.train, embedder)[0]
    head = prompt[: len(prompt) - len(zero)]  # the system turn in front of the same dialogue
    print(f"===== {system}: system turn of {len(head)} characters")
    print(head[:600] + (" ..." if len(head) > 600 else ""))

# %% [markdown]
# Now every baseline answers the same windows (greedy decoding, at most 64 new tokens, stopping at
# the end of the turn; quick mode: 24 tokens).

# %%
GEN = dict(max_new_tokens=24 if QUICK else 64, batch_size=8)
replies = {s: baseline_replies(s, model, tok, windows, ds.train, embedder, **GEN) for s in PROMPT_BASELINES}
refs = [w.reply for w in windows]
pd.DataFrame({"querier": [w.querier for w in windows], **{s: r for s, r in replies.items()}}).head(6)

# %% publish
from qlearn.evaluate import guess_lang, score_all

LANG = guess_lang(refs)
table = pd.DataFrame([{"system": s, **score_all(p, refs, LANG)} for s, p in replies.items()]).set_index("system")
table[["rougeL", "rougeL_low", "rougeL_high", "rougeL_paper", "bleu1", "bleu4", "distinct2", "empty"]].round(2)

# %% figure=05_rougeL_baselines
fig, ax = plt.subplots(figsize=(6, 2.5))
err = np.array([table.rougeL - table.rougeL_low, table.rougeL_high - table.rougeL])
ax.barh(table.index, table.rougeL, xerr=err, capsize=3, color="tab:gray")
ax.set_xlabel("ROUGE-L ×100, 95% bootstrap CI")
ax.set_title(f"{RESPONDER}, {MODEL}, {len(windows)} windows")
plt.show()

# %% [markdown]
# With a handful of windows the intervals are wide: in quick mode, read the table as a demonstration
# of the pipeline, not as a result. The paper's baselines score close to each other (5–7 ROUGE-L
# on the English shows); extra text in the prompt often *hurts* a small model, which then imitates
# the profile instead of the dialogue.
#
# ## 6. A judge model, in both orders
#
# The paper's GPT-4 prompt is not published, so qlearn publishes its own (`JUDGE_PROMPT`). Each
# window is judged twice, with the two replies swapped, because judges prefer one position; a
# tie is allowed; an answer without a verdict is counted as invalid, not guessed.
#
# The judge here is SmolLM2 itself — far too weak to trust; it only shows the plumbing. Set
# `QLEARN_JUDGE_BASE_URL`, `QLEARN_JUDGE_MODEL` (and `QLEARN_JUDGE_API_KEY`) to use a real judge
# behind any OpenAI-compatible endpoint, or pass a stronger local chat model to `HFJudge.load`.

# %%
from qlearn.evaluate.judge import JUDGE_PROMPT, EndpointJudge, HFJudge, win_rate

print(JUDGE_PROMPT)
judge = EndpointJudge() if os.environ.get("QLEARN_JUDGE_BASE_URL") else HFJudge(model, tok)
J = 3 if QUICK else 50
wr = win_rate(judge, windows[:J], replies["RPG"][:J], replies["Zero-shot"][:J])
print("RPG vs Zero-shot:", wr)
print("first-position verdicts:", sum(r["a_first"] == "1" for r in wr.records) + sum(r["b_first"] == "1" for r in wr.records),
      "of", 2 * len(wr.records))

# %% [markdown]
# If a weak judge answers "1" almost every time, the two orders cancel out and the win rate
# sits at 50%: exactly what the both-orders protocol is for.
#
# ## 7. Does the reply depend on who asks?
#
# The paper's premise is that the same query deserves different replies from different askers.
# No metric above checks it. Querier differentiation keeps every word of a window and swaps only
# the querier's *name*, then asks: how much do the replies change, and can a classifier trained on
# the real replies tell whom each reply was addressed to? (Chance = 1 / number of askers.)

# %% publish
from qlearn.evaluate.differentiation import differentiation

diff = differentiation(model, tok, ds, n_windows=2 if QUICK else 50, n_askers=4, embedder=embedder, **GEN)
print(diff.row())

# %%
pd.DataFrame(diff.replies).head(4)

# %% [markdown]
# The base model does react to the name (replies change), but does the change carry who is
# asking? Compare `asker_recovery` with `chance`. Notebook 06 repeats this for the trained models.
#
# ## Exercises
#
# **1.** Compute the paper variant of ROUGE-L by hand for *the the cat* vs *the cat*, then check
# with `rouge_l(..., variant="paper")`. Why does it differ from the `rouge-score` value?

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# print(rouge_l(["the the cat"], ["the cat"], variant="paper"), rouge_l(["the the cat"], ["the cat"]))
# ```
# The paper variant counts unique tokens: {the, cat} against {the, cat}, LCS 2 of 2 and 2, so F = 100.
# `rouge-score` counts all 3 predicted tokens: P = 2/3, R = 1, F = 80.
# </details>

# %% [markdown]
# **2.** Is Few-shot better than Zero-shot on these windows? Use a paired test on per-window scores.

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# fs = rouge_l_scores(replies["Few-shot"], refs, LANG)
# zs = rouge_l_scores(replies["Zero-shot"], refs, LANG)
# print(paired_test(fs, zs))
# ```
# Look at the confidence interval of the difference: if it contains 0 (and p > 0.05), these windows
# cannot tell the two systems apart. In quick mode that is the usual outcome.
# </details>

# %% [markdown]
# **3.** Write your own profile of the responder (three sentences) into a folder and run RPG with
# it (`baseline_replies("RPG", ..., profiles_dir=...)`). Does ROUGE-L move? Does the style?

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# mine = Path("my_profiles"); mine.mkdir(exist_ok=True)
# (mine / f"{RESPONDER}.md").write_text(f"You are {RESPONDER}. You answer in one short sentence and you are always in a hurry.")
# rpg2 = baseline_replies("RPG", model, tok, windows, ds.train, profiles_dir=mine, **GEN)
# print(rouge_l(rpg2, refs, LANG), rouge_l(replies["RPG"], refs, LANG), distinct_n(rpg2, 2))
# ```
# The style follows the profile (shorter replies); ROUGE-L barely moves, because it only counts
# shared words with one reference reply.
# </details>

# %% [markdown]
# ## Summary
#
# * ROUGE-L and BLEU count shared words in order; paraphrases score 0, repetition can score well.
# * Chinese needs per-character tokens; the paper's ROUGE-L is the set-based `rouge` package.
# * Report 95% intervals; compare systems with a paired test on the same windows.
# * The baselines differ only in the system turn; every system answers the same windows.
# * A judge must be asked in both orders; querier differentiation checks the paper's premise
#   directly.

# %% [markdown]
# ## Questionnaire
#
# Answer in a sentence or two each, without looking back if you can; then check the
# notebook (teachers: answer notes are in `docs/teaching_guide.md`).
#
# 1. What does ROUGE-L compute, and why do paraphrases score near 0?
# 2. How does the paper's ROUGE-L variant differ from rouge-score's, and what does that reward?
# 3. Why does rouge-score give 0 on Chinese unless the text is split into characters?
# 4. Why report a bootstrap interval, and why compare two systems with a paired test?
# 5. How do the four prompting baselines differ from each other?
# 6. Why is the judge asked in both orders?
# 7. What does querier differentiation measure that ROUGE-L cannot?
