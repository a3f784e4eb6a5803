"""``qlearn demo``: the whole pipeline on the embedded defaults, ending in a report folder.

Each stage writes its figures and tables into ``out`` and appends a section to ``report.md``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .assets import SMOLLM2


class Report:
    """Collects Markdown sections and timings; ``write()`` saves ``report.md``."""

    def __init__(self, out: Path):
        self.out = out
        self.sections: list[str] = []
        self.timings: list[tuple[str, float]] = []

    def add(self, title: str, body: str, seconds: float | None = None):
        self.sections.append(f"## {title}\n\n{body.strip()}\n")
        if seconds is not None:
            self.timings.append((title, seconds))
            print(f"qlearn demo: {title} done in {seconds:.1f} s")

    def write(self) -> Path:
        rows = "\n".join(f"| {t} | {s:.1f} |" for t, s in self.timings)
        total = sum(s for _, s in self.timings)
        text = "# qlearn demo report\n\n" + "\n".join(self.sections)
        text += f"\n## Timings\n\n| stage | seconds |\n|---|---|\n{rows}\n| total | {total:.1f} |\n"
        path = self.out / "report.md"
        path.write_text(text, encoding="utf-8")
        return path


def _stage_same_query(report: Report, model_name: str):
    """The course's question in one picture: the same query, asked by different people."""
    from .assets import load_lm
    from .generation import generate_replies
    from .template import render_dialogue, turn_format

    start = time.perf_counter()
    model, tokenizer = load_lm(model_name)
    fmt = turn_format(tokenizer)
    query = "Do you want to grab dinner tonight?"
    queriers = ["Mom", "Boss", "Best friend"]
    prompts = [render_dialogue(fmt, [(q, query)], "Alex") for q in queriers]
    replies = generate_replies(model, tokenizer, prompts, max_new_tokens=40, progress=False)
    rows = "\n".join(f"| {q} | {r.replace('|', '/')} |" for q, r in zip(queriers, replies))
    report.add("Same query, different queriers (base model, before training)",
               f"Query: *{query}* — responder: Alex, model: `{model_name}`.\n\n"
               f"| querier | reply |\n|---|---|\n{rows}", time.perf_counter() - start)


def _stage_data(report: Report):
    """Build the chitchat responder's dataset (real people, MIT licence, installed with pip)."""
    from .data import build_dataset, save_mqdialog
    from .data.stats import dropped_markdown, stats_rows, to_markdown, write_stats

    start = time.perf_counter()
    ds = build_dataset("chitchat")
    save_mqdialog(ds, report.out / "data")
    md, csv = write_stats([ds], report.out / "data")
    report.add("1. Data: the chitchat responder's dialogue windows",
               f"Responder **{ds.responder}** and {len(ds.queriers)} queriers from the Chit-Chat "
               f"dataset, in the MQDialog layout under `data/` ([statistics]({md.relative_to(report.out)}), "
               f"[CSV]({csv.relative_to(report.out)})).\n\n{to_markdown(stats_rows([ds]))}\n\n"
               f"{dropped_markdown(ds)}", time.perf_counter() - start)
    return ds


def _stage_clusters(report: Report, ds):
    """Cluster the queries (MiniLM + cosine k-means) and draw them with UMAP."""
    from .cluster import cluster_and_report

    start = time.perf_counter()
    res = cluster_and_report(ds, report.out / "clusters", ks=(5, 10, 15))
    p = {k: v.relative_to(report.out) for k, v in res["paths"].items()}
    mix = res["report"]
    single = int((mix["n_queriers"] <= 1).sum())
    report.add("2. Query clusters",
               f"k = {res['clusterer'].n_clusters} clusters of {len(ds.train)} training queries "
               f"([report]({p['report']}), [k selection]({p['k_selection']})); {single} cluster(s) "
               f"hold a single querier.\n\n![queries by cluster and by querier]({p['umap']})\n\n"
               f"![querier mix per cluster]({p['querier_mix']})", time.perf_counter() - start)
    return res["clusterer"]


def run_demo(out: str | os.PathLike = "runs/demo", model: str = SMOLLM2) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo uses embedded assets only
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    _stage_same_query(report, model)
    ds = _stage_data(report)
    _stage_clusters(report, ds)
    path = report.write()
    print(f"qlearn demo: report written to {path}")
    return path
