# %%
META = {
    "title": "02 · Query clustering: who asks what, and why it matters for the contrast",
    "goals": [
        "Explain why the querier-contrastive loss must compare queriers on *similar* queries",
        "Embed every window's query with a sentence encoder and cluster it (cosine k-means)",
        "Choose k with the silhouette and the querier mix, and read a cluster report",
        "See the clusters and the queriers in a UMAP projection, and save the clustered data",
    ],
    "time": "30-40 minutes; the code runs in 2-4 minutes on a laptop CPU (quick mode), longer in full mode.",
    "hardware": "CPU is enough: the encoder is all-MiniLM-L6-v2 (22 M parameters), no LLM is loaded.",
    "responder": "Sheldon",
    "data": True,
    "lm": False,
}

# %% [markdown]
# ## 1. Why cluster?
#
# The querier-contrastive loss (notebook 04) pulls together the representations of dialogues with
# the *same* querier and pushes apart those with *different* queriers. That is only useful if the
# model learns **who** is asking. But queriers also differ in **what** they ask: in *The Big Bang
# Theory*, Leonard and Raj talk physics with Sheldon much more often than Penny does. A model can
# separate Leonard's dialogues from Penny's just by their topic, without learning anything about
# the asker: query diversity confounds the contrast.
#
# The paper's fix: cluster the dialogues by their query, and contrast queriers **only within a
# cluster**. Inside the "physics" cluster, Leonard's and Penny's windows ask similar things, so the
# only thing left to tell them apart is the asker. Two consequences:
#
# * a cluster with **one querier** gives the loss nothing to contrast; we want mixed clusters;
# * the paper used k = 10 clusters for its big responders (Sheldon, Leonard, Rachel, Ross,
#   佟湘玉, 白展堂, the WeChat user) and k = 5 for the rest. Its clustering code was never
#   released (the cluster ids came precomputed), so everything here is qlearn's own choice:
#   all-MiniLM-L6-v2 embeddings, L2-normalized, k-means with cosine similarity, and the nearest
#   training centroid for validation and test windows.

# %%
import time

import numpy as np
from dataclasses import replace

from qlearn import viz
from qlearn.cluster import (QueryClusterer, assign_clusters, cluster_report, default_k, k_selection,
                            save_clustered)
from qlearn.data import build_dataset

full = build_dataset(SOURCE, RESPONDER)
# quick mode: every 4th window (the picture is the same, embedding is 4x faster)
ds = replace(full, train=full.train[::4], val=full.val[::4], test=full.test[::4]) if QUICK else full
print(full)
print(ds)

# %% [markdown]
# ## 2. What is "the query"?
#
# A window is a short two-person dialogue that ends with the responder's turn. Its **query** is the
# querier's turn(s) just before that final turn (`Window.query`). Other choices are possible: only
# the last querier line, or the whole context (`query_text="last"` / `"context"`); exercise 1
# compares them.

# %%
w = ds.train[7]
for t in w.turns:
    print(f"{t.speaker:>10}: {t.text[:100]}")
print("\nquery ->", repr(w.query[:200]))

# %% [markdown]
# ## 3. Embed the queries
#
# `QueryClusterer` follows scikit-learn's conventions: the constructor only stores settings,
# `fit` learns, `transform` gives the (unit-norm) embeddings, `predict` assigns new windows.
# Embeddings are cached on disk, keyed by model and text: the second call embeds nothing.

# %%
k = default_k(RESPONDER, SOURCE)
qc = QueryClusterer(n_clusters=k, embedder="minilm", random_state=0)
start = time.perf_counter()
emb = qc.transform(ds.train)
print(f"{emb.shape} in {time.perf_counter() - start:.1f} s "
      f"({qc.embed_misses_} embedded, {qc.embed_hits_} from the cache)")
start = time.perf_counter()
emb = qc.transform(ds.train)
print(f"again: {time.perf_counter() - start:.2f} s ({qc.embed_misses_} embedded, {qc.embed_hits_} cached)")

# %% [markdown]
# Because the rows are unit vectors, the dot product *is* the cosine similarity. The queries most
# similar to our example:

# %%
sims = emb @ emb[7]
for i in np.argsort(-sims)[1:6]:
    print(f"{sims[i]:.2f}  {ds.train[i].querier:>10}: {ds.train[i].query[:80]!r}")

# %% [markdown]
# ## 4. Choosing k
#
# Two numbers per k, computed on the same embeddings:
#
# * **silhouette** (cosine): how much closer a query is to its own cluster than to the next one;
#   1 = perfectly separated, 0 = on the border. Conversational queries are short and varied, so
#   expect small values; look at the trend, not the level.
# * **querier mix**: per cluster, the entropy of its querier distribution divided by log(number of
#   queriers), averaged with cluster sizes as weights. 1 = every cluster has every querier equally
#   often; 0 = every cluster belongs to one querier (nothing to contrast).
#
# More clusters make each one more homogeneous in topic but smaller and less mixed: the contrast
# has fewer queriers to compare. The paper's default is our default; the table tells you whether
# it is reasonable for this responder.

# %% publish
ks = range(2, 13) if QUICK else range(2, 21)
table = k_selection(qc, ds.train, ks)
table

# %% figure=02_k_selection
viz.plot_k_selection(table, chosen=k)

# %% [markdown]
# ## 5. Fit, and read the clusters
#
# `assign_clusters` fits on the training windows and gives validation and test windows the
# nearest training centroid; it writes `cluster_id` into every window. The report lists, per
# cluster: size, queriers and how mixed they are, the top TF-IDF terms (what the cluster is
# about) and the queries nearest its center.

# %% publish
qc = assign_clusters(ds, k, qc)
report = cluster_report(ds.train, qc)
report[["cluster", "size", "n_queriers", "mix", "top_terms", "warning"]]

# %%
for row in report.itertuples():
    print(f"cluster {row.cluster} ({row.size} queries): {', '.join(row.top_terms[:6])}")
    for e in row.examples[:2]:
        print(f"    {e[:90]!r}")

# %% figure=02_cluster_mix
viz.plot_cluster_mix(report)

# %% [markdown]
# ## 6. Seeing it: UMAP
#
# UMAP squeezes the 384-D embeddings into 2-D while keeping neighbours neighbours. It is seeded
# (same input, same picture); its first call compiles numba code (about 15 s, once per session).
# Left: coloured by cluster. Right: the same points coloured by querier. If the right panel showed
# separate islands per querier, queriers would differ mostly by topic — exactly the confound
# clustering removes.

# %% figure=02_umap_queries
xy = viz.umap_2d(qc.embeddings_, random_state=0)
queriers = [w.querier for w in ds.train]
viz.plot_queries(xy, qc.labels_, queriers, f"{RESPONDER}'s queries")

# %% [markdown]
# Small multiples: one panel per cluster, its queries coloured by querier over all queries in grey.
# A one-colour panel is a cluster the contrastive loss cannot use.

# %% figure=02_cluster_grid
viz.plot_cluster_grid(xy, qc.labels_, queriers)

# %% [markdown]
# ### Chinese queries need another embedder
#
# MiniLM was trained on English: its WordPiece vocabulary has no entry for most Chinese characters,
# which it turns into `[UNK]`. Clustering Chinese queries with it would group them by their few
# known tokens (punctuation, Latin letters), not by meaning. `QueryClusterer`'s default embedder is
# therefore `"auto"`: MiniLM for English, and for Chinese a character n-gram TF-IDF reduced by SVD
# and fitted on the training queries (offline and deterministic; on Colab a multilingual sentence
# encoder can be passed instead). The **coverage** — the share of the query text an embedder
# cannot read — makes the difference visible. Here for 佟湘玉 (武林外传, k = 10); we show only
# cluster-level numbers and TF-IDF terms, never a whole line of the script.

# %% figure=02_chinese_coverage
import pandas as pd
import matplotlib.pyplot as plt

from qlearn.assets import load_embedder
from qlearn.cluster import embedding_coverage
from qlearn.data.download import download, load_manifest

ZH_SOURCE, ZH_RESPONDER = "swordsman", "佟湘玉"
zh_root = Path(os.environ["QLEARN_DATA_ROOT"])
if not (zh_root / load_manifest(ZH_SOURCE)["folder"]).exists():
    download(ZH_SOURCE, zh_root)
zh_full = build_dataset(ZH_SOURCE, ZH_RESPONDER)
zh = replace(zh_full, train=zh_full.train[::4], val=zh_full.val[::4], test=zh_full.test[::4]) if QUICK else zh_full
zk = default_k(ZH_RESPONDER, ZH_SOURCE)
qz = assign_clusters(zh, zk, QueryClusterer(n_clusters=zk, random_state=0))  # embedder="auto"
zh_report = cluster_report(zh.train, qz)
coverage = pd.DataFrame([embedding_coverage(load_embedder("minilm"), [w.query for w in zh.train]),
                         zh_report.attrs["coverage"]]).set_index("embedder")
display(coverage)
fig, ax = plt.subplots(figsize=(6, 2.2))
ax.barh(coverage.index, 100 * coverage["unknown_rate"], color=["tab:red", "tab:green"])
ax.set_xlabel(f"% of the query text the embedder cannot read ({len(zh.train)} {ZH_RESPONDER} queries)")
ax.set_xlim(0, 100)
plt.show()
zh_report[["cluster", "size", "n_queriers", "mix", "top_terms", "warning"]]

# %% [markdown]
# ## 7. Validation and test windows, and saving
#
# Test windows were never seen by k-means; they get the nearest centroid. The cluster sizes should
# look like the training ones.

# %% publish
print("train", np.bincount([w.cluster_id for w in ds.train], minlength=k))
print("test ", np.bincount([w.cluster_id for w in ds.test], minlength=k))
out = save_clustered(ds, f"runs/02_clusters/{SOURCE}_{RESPONDER}_clustered")
print("saved", out, "->", sorted(p.name for p in out.iterdir())[:5])

# %% [markdown]
# The same step from the command line (it also writes the report and every figure as PNG):
#
# ```bash
# qlearn data ...                                   # a dataset folder in the MQDialog layout
# qlearn cluster --data DATA_DIR --k 10 --out runs/clusters
# ```

# %% [markdown]
# ## Exercises
#
# **1. Which text is the query?** Fit `QueryClusterer(k, query_text="last")` and
# `query_text="context"` on `ds.train`. Compare each labeling with ours using
# `sklearn.metrics.adjusted_rand_score`, and compare their k-selection tables. Which choice gives
# the best-mixed clusters?

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# from sklearn.metrics import adjusted_rand_score
# for how in ["last", "context"]:
#     other = QueryClusterer(n_clusters=k, query_text=how).fit(ds.train)
#     print(how, "ARI vs 'query':", round(adjusted_rand_score(qc.labels_, other.labels_), 3))
#     print(k_selection(other, ds.train, [k]))
# ```
#
# "last" agrees closely with "query" (most queries are a single turn). "context" also embeds the
# responder's earlier lines and the speaker names ("Penny: ..."), so the querier's name itself can
# pull one querier's windows together: compare the `mix` columns. Clustering on who speaks is
# exactly what the contrast must not see, which is why qlearn embeds the query only by default.
# </details>

# %% [markdown]
# **2. Your own queries.** Write three queries of your own (one about science, one about food,
# one about a date) and find the cluster each lands in with `qc.predict`. Do the clusters' top
# terms agree with you?

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# mine = ["Can you explain how a laser works?", "What do you want for dinner?",
#         "Should I ask her out on Friday?"]
# for text, c in zip(mine, qc.predict(mine)):
#     print(c, text, "->", report.loc[c, "top_terms"][:5])
# ```
#
# `predict` accepts plain strings as well as windows; each goes to the most similar centroid.
# </details>

# %% [markdown]
# **3. How much contrast is left?** For every training window, count the *other* queriers in its
# cluster. What share of windows sits in a cluster with no other querier, for k = 5, 10 and 20?

# %%
# Your code here.

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# from collections import defaultdict
# for kk in [5, 10, 20]:
#     labels = QueryClusterer(n_clusters=kk).fit(ds.train).labels_
#     members = defaultdict(set)
#     for w, c in zip(ds.train, labels):
#         members[c].add(w.querier)
#     alone = np.mean([len(members[c]) == 1 for c in labels])
#     print(kk, f"{alone:.1%} of windows have no other querier in their cluster")
# ```
#
# With a few hundred windows per cluster it is (close to) 0%: every cluster mixes the main
# queriers, so the contrast is restricted but not empty. It grows when clusters get small, i.e.
# for large k or for responders with little data (run the same loop on a small responder).
# </details>

# %% [markdown]
# ## Questionnaire
#
# Answer in a sentence or two each, without looking back if you can; then check the
# notebook (teachers: answer notes are in `docs/teaching_guide.md`).
#
# 1. What confound does clustering remove from the contrastive loss?
# 2. Which text is embedded as a window's query, and what are the alternatives?
# 3. Why can k-means on L2-normalised embeddings be called cosine k-means?
# 4. What do the silhouette and the querier mix measure, and why can they pull k in opposite directions?
# 5. Why is a cluster with a single querier useless for the loss?
# 6. How do validation and test windows get a cluster?
# 7. What may you conclude from a UMAP picture, and what not?
