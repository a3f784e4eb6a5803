"""Benchmark: cluster + UMAP of 20,000 real queries (goal: <= 60 s after numba's one-off JIT).

    QLEARN_DATA_ROOT=../shared/data python benchmarks/cluster.py [--n 20000] [--k 10]

Queries are the windows' queries of the English responders (Friends, The Big Bang Theory, Modern
Family); chitchat fills up if they are fewer than --n. Prints, separately: numba compilation
(a UMAP warm-up on random vectors), embedding (cold, then from the on-disk cache), spherical
k-means, UMAP, and the goal ratio for k-means + UMAP; wall and CPU seconds and the load average
(other jobs on the same cores inflate wall time, not CPU time).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GOAL_S = 60.0


def queries(n: int) -> list[str]:
    from qlearn.data import build_dataset

    texts: list[str] = []
    for source, responders in [("friends", ["Rachel", "Ross"]), ("bigbang", ["Sheldon", "Leonard"]),
                               ("modernfamily", ["Claire", "Phil"]), ("chitchat", [None])]:
        for r in responders:
            ds = build_dataset(source, r)
            texts += [w.query for w in (*ds.train, *ds.val, *ds.test)]
            if len(texts) >= n:
                return texts[:n]
    raise SystemExit(f"only {len(texts)} queries in the data; run with --n {len(texts)}")


def clock(label: str, fn, *args, **kw):
    """Run fn; print wall and CPU seconds (CPU time shows the work when other jobs share the cores)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{label:48s} {seconds:7.1f} s wall {cpu:7.1f} s CPU  (load {os.getloadavg()[0]:.1f})")
    return out, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()

    from qlearn.cluster import EmbeddingCache, QueryClusterer
    from qlearn.viz import umap_2d

    texts, _ = clock(f"build datasets ({args.n} queries)", queries, args.n)
    print(f"  {len(set(texts))} distinct texts, mean {np.mean([len(t) for t in texts]):.0f} chars")
    rng = np.random.default_rng(0)
    warm = rng.normal(size=(5000, 384)).astype(np.float32)  # > 4096 rows: the NN-descent path too
    _, jit = clock("numba JIT (warm-up: UMAP of 5000 random rows)", umap_2d, warm)
    cache = EmbeddingCache("minilm")
    _, cold = clock("embedding, before caching", cache.embed, texts)
    print(f"  {cache.misses} embedded, {cache.hits} already cached")
    _, cached = clock("embedding, from the on-disk cache", cache.embed, texts)
    assert cache.misses == 0
    qc, fit = clock(f"QueryClusterer(k={args.k}).fit (cached embeddings)",
                    QueryClusterer(n_clusters=args.k).fit, texts)
    _, um = clock("UMAP 2-D of all queries", umap_2d, qc.embeddings_)
    total = fit + um
    print(f"\n{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")
    print(f"cluster + UMAP of {len(texts)} queries: {total:.1f} s wall "
          f"(goal {GOAL_S:.0f} s: {total / GOAL_S:.2f}x of budget); numba JIT {jit:.1f} s; "
          f"embedding {cold:.1f} s cold, {cached:.1f} s cached; sizes {np.bincount(qc.labels_).tolist()}")


if __name__ == "__main__":
    main()
