"""Figures for the course: UMAP projections, coloured scatters, small multiples, k-selection.

Every function returns a ``matplotlib.figure.Figure`` (shown inline when it is a notebook cell's
last value, with no pyplot state involved: nothing is shown twice or kept open) and
:func:`save_png` writes one to disk.

    >>> xy = umap_2d(embeddings, random_state=0)
    >>> fig = plot_queries(xy, clusters, queriers); save_png(fig, "umap.png")
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def umap_2d(X, random_state: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
            metric: str = "cosine", n_epochs: int | None = 200) -> np.ndarray:
    """Seeded 2-D UMAP of the rows of ``X`` (``[n, 2]``). The first import and call on a fresh
    install compile numba (~60 s on 2 cores, cached on disk afterwards).

    ``n_epochs=200`` is UMAP's own choice above 10,000 points; below that it would run 500: 2.5
    times the layout work for a picture that barely changes (``None`` = UMAP's default).

    With a seed UMAP runs single-threaded, so the same input gives the same picture. numba (inside
    UMAP) resets the process's thread count, which torch shares; it is restored afterwards, or a
    model used after a UMAP call can run many times slower.
    """
    import torch
    import umap

    X = np.asarray(X, dtype=np.float32)
    if len(X) < 3:
        raise ValueError(f"UMAP needs at least 3 points, got {len(X)}")
    if metric == "cosine" and len(X) < 4096:
        # below 4096 points UMAP computes all distances through sklearn with a Python-called numba
        # cosine (~18 s for 3,300 points); the same matrix from sklearn takes 0.1 s
        from sklearn.metrics.pairwise import cosine_distances

        X, metric = cosine_distances(X).astype(np.float32), "precomputed"
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(X) - 1),
                        min_dist=min_dist, metric=metric, random_state=random_state,
                        n_epochs=n_epochs)
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state": expected
            warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
            return reducer.fit_transform(X)
    finally:
        torch.set_num_threads(threads)


class NotebookFigure(Figure):
    """A pyplot-free ``Figure`` that Jupyter shows as PNG when it is a cell's value."""

    def _repr_png_(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        return buf.getvalue()


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (5.0, 4.5), **kw):
    """A pyplot-free figure with an ``nrows × ncols`` grid of axes: ``(fig, axes)`` (axes 2-D)."""
    fig = NotebookFigure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _palette(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _markers(names, colors):
    from matplotlib.lines import Line2D

    return [Line2D([], [], marker="o", linestyle="", color=c, label=n, markersize=5)
            for n, c in zip(names, colors)]


def scatter_by(points, labels, ax=None, title: str | None = None, legend: bool | None = None,
               s: float = 8, alpha: float = 0.7, max_legend: int = 20):
    """Scatter 2-D ``points`` coloured by categorical ``labels``; returns the axes.

    Categories are drawn largest first (small ones stay visible on top); the legend is shown when
    there are at most ``max_legend`` categories. Without ``ax`` a new figure is made.
    """
    points, labels = np.asarray(points), np.asarray(labels)
    if ax is None:
        _, axes = new_figure()
        ax = axes[0, 0]
    cats, counts = np.unique(labels, return_counts=True)
    colors = dict(zip(cats, _palette(len(cats))))
    for c in cats[np.argsort(-counts)]:
        m = labels == c
        ax.scatter(points[m, 0], points[m, 1], s=s, alpha=alpha, color=colors[c], label=str(c),
                   linewidths=0)
    if title:
        ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    if legend if legend is not None else len(cats) <= max_legend:
        ax.legend(handles=_markers([str(c) for c in cats], [colors[c] for c in cats]), fontsize=7,
                  loc="best", frameon=False)
    return ax


def plot_queries(points, clusters, queriers, title: str = "Queries (UMAP)") -> Figure:
    """Side by side: the same 2-D points coloured by cluster and by querier."""
    fig, axes = new_figure(ncols=2)
    scatter_by(points, clusters, axes[0, 0], f"{title}: by cluster")
    scatter_by(points, queriers, axes[0, 1], f"{title}: by querier")
    return fig


def plot_cluster_grid(points, clusters, queriers, ncols: int = 5) -> Figure:
    """Small multiples, one panel per cluster: all queries in grey, the cluster's by querier.

    A panel with one colour is a cluster with a single querier (nothing to contrast).
    """
    points, clusters, queriers = np.asarray(points), np.asarray(clusters), np.asarray(queriers)
    cats = np.unique(clusters)
    ncols = min(ncols, len(cats))
    nrows = int(np.ceil(len(cats) / ncols))
    fig, axes = new_figure(ncols, nrows, size=(3.2, 3.0))
    names = np.unique(queriers)
    colors = dict(zip(names, _palette(len(names))))
    for ax, c in zip(axes.flat, cats):
        ax.scatter(points[:, 0], points[:, 1], s=3, color="0.85", linewidths=0)
        m = clusters == c
        for q in np.unique(queriers[m]):
            mq = m & (queriers == q)
            ax.scatter(points[mq, 0], points[mq, 1], s=6, color=colors[q], label=str(q),
                       linewidths=0)
        ax.set_title(f"cluster {c}: {m.sum()} queries, {len(np.unique(queriers[m]))} queriers",
                     fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    for ax in list(axes.flat)[len(cats):]:
        ax.set_axis_off()
    if len(names) <= 20:
        fig.legend(handles=_markers([str(q) for q in names], [colors[q] for q in names]), loc="outside lower center", ncols=min(len(names), 8), fontsize=7,
                   frameon=False)
    return fig


def plot_k_selection(table, chosen: int | None = None) -> Figure:
    """Silhouette and querier mix against k (a ``qlearn.cluster.k_selection`` table)."""
    fig, axes = new_figure(ncols=2, size=(4.5, 3.2))
    for ax, col, label in ((axes[0, 0], "silhouette", "silhouette (cosine), higher = separated"),
                           (axes[0, 1], "mix", "querier mix, 1 = evenly mixed")):
        ax.plot(table["k"], table[col], marker="o")
        ax.set_xlabel("k (clusters)"), ax.set_title(label, fontsize=9)
        if chosen is not None:
            ax.axvline(chosen, color="0.5", linestyle="--", linewidth=1)
    return fig


def plot_cluster_mix(report, top: int = 8) -> Figure:
    """Stacked bars: each cluster's size split by querier (the ``top`` queriers, rest = "other")."""
    from collections import Counter

    total = Counter()
    for qs in report["queriers"]:
        total.update(qs)
    names = [q for q, _ in total.most_common(top)]
    colors = dict(zip(names + ["other"], _palette(len(names)) + ["0.7"]))
    fig, axes = new_figure(size=(max(5.0, 0.5 * len(report) + 2), 3.5))
    ax = axes[0, 0]
    bottom = np.zeros(len(report))
    for q in names + ["other"]:
        vals = np.array([qs.get(q, 0) if q != "other" else
                         sum(n for k, n in qs.items() if k not in names) for qs in report["queriers"]])
        ax.bar(report["cluster"].astype(str), vals, bottom=bottom, color=colors[q], label=q)
        bottom += vals
    ax.set_xlabel("cluster"), ax.set_ylabel("queries"), ax.set_title("Querier mix per cluster")
    ax.legend(fontsize=7, frameon=False, ncols=2)
    return fig


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path
