"""``qlearn ablate --config FILE``: baselines, the full method and its ablations as one grid.

Every trained system is one ``qlearn.train`` run with the same data, base model and budget (the
``train:`` block of the config) plus its own overrides; the prompting baselines use the base
model (the systems: :data:`qlearn.evaluate.systems.SYSTEMS`). All systems answer exactly the
same test windows. A trained system's checkpoint is chosen on the *validation* split (ROUGE-L), never on test — the official scripts pick the best
epoch on the reported split, which flatters every system.

Outputs: ``<output_dir>/table.md``, ``table.csv`` (first column = system name), ``rougeL.png`` (bars
with 95% bootstrap CIs) and ``command.txt``. Checkpoints and generated replies stay in
``work_dir`` (they may echo transcript text, so they are not results to commit). Re-running the
same command reuses every finished system.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..runs import base_lm, checkpoints, load_trained
from .baselines import baseline_replies, model_replies
from .asker_fit import asker_fit, asker_fit_scores
from .metrics import bootstrap_ci, guess_lang, paired_test, rouge_l, rouge_l_scores, score_all
from .systems import SYSTEMS, System, Trained, system_color


PAPER_GRID = ["Zero-shot", "FT", "RPG", "Few-shot", "QCG", "Ours", "w/o low-rank", "w/o clustering",
              "w/o multi-view", "w/o contrastive"]


@dataclass
class EvalConfig:
    n_test: int | None = 200  # a seeded subset of the test windows (None = all)
    n_val: int | None = 50  # validation windows for checkpoint selection
    select_on_val: bool = True  # False: use each run's final weights
    max_new_tokens: int = 64
    batch_size: int = 8
    do_sample: bool = False
    seed: int = 0
    reference: str = "Ours"  # paired tests of every system against this one
    stopwords: str | None = None  # BLEU stop words: a file (the official HIT list) or "builtin"
    diff_windows: int = 0  # querier differentiation on this many test windows (0 = off)
    diff_askers: int = 4
    diff_systems: list[str] = field(default_factory=lambda: ["Zero-shot", "FT", "Ours"])
    # learning curve: every saved checkpoint of these systems scored on *test* (figure only,
    # never selection); needs train.save_steps and save_total_limit: null
    curve_systems: list[str] = field(default_factory=list)


@dataclass
class AblateConfig:
    name: str = "ablation"
    systems: list[str] = field(default_factory=lambda: list(PAPER_GRID))
    train: dict = field(default_factory=dict)  # TrainConfig fields shared by every trained system
    custom: dict = field(default_factory=dict)  # extra systems: name -> TrainConfig overrides
    sweep: dict = field(default_factory=dict)  # key -> values: systems "Ours (key=value)"
    # train seeds: each trained system once per seed; or {system: [seeds], default: [seeds]}
    seeds: list[int] | dict = field(default_factory=list)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str | None = None  # default results/<name>
    work_dir: str | None = None  # default runs/ablate/<name>
    # also keep every run's replies and learning-curve points in <output_dir>/cache/, and reuse
    # them when work_dir lacks them: a later session or machine extends the grid instead of
    # retraining it. Only for data whose text may be committed (planted-*, synthetic, chitchat).
    keep_replies: bool = False

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "AblateConfig":
        from ..config import build, check_range
        from ..errors import ConfigError

        cfg = build(cls, d, where, label="ablate")  # unknown keys, types, the eval: block
        ev = cfg.eval
        for name in ("n_test", "n_val"):
            v = getattr(ev, name)
            check_range(v is None or v >= 1, where, f"eval.{name}", v, "use >= 1, or null for all")
        for name in ("max_new_tokens", "batch_size"):
            check_range(getattr(ev, name) >= 1, where, f"eval.{name}", getattr(ev, name),
                        "use an integer >= 1")
        check_range(ev.diff_windows >= 0, where, "eval.diff_windows", ev.diff_windows,
                    "use 0 (off) or a positive number")
        source = str(cfg.train.get("source", ""))
        if cfg.keep_replies and not shareable(source):
            raise ConfigError(f"{where}: keep_replies: true would store replies of {source!r}, which "
                              "echo copyrighted scripts: keep it for planted-*, synthetic or chitchat "
                              "data, or set keep_replies: false")
        for key, values in cfg.sweep.items():
            for v in values:
                cfg.custom.setdefault(f"Ours ({key}={v})", {key: v})
                if f"Ours ({key}={v})" not in cfg.systems:
                    cfg.systems.append(f"Ours ({key}={v})")
        unknown = [s for s in cfg.systems if s not in SYSTEMS and s not in cfg.custom]
        if unknown:
            raise ValueError(f"{where}: unknown system(s) {unknown}; built in: "
                             f"{list(SYSTEMS)}; define others under custom:")
        for s in cfg.systems:  # one run per (system, seed), cached like any system
            system = cfg.system(s)
            for k in (cfg.seeds_of(s) if system.trains else []):
                cfg.custom.setdefault(seeded(s, k), {**system.overrides, "seed": int(k)})
        for s in cfg.systems:  # every trained system's recipe is checked now, not mid-grid
            if cfg.system(s).trains:
                try:
                    cfg.train_config(s)
                except ConfigError as e:
                    raise ConfigError(f"{where}: {e} (in qlearn ablate the train: block is set "
                                      "with --set train.<field>=...)") from e
        return cfg

    def system(self, name: str) -> System:
        """The :class:`~qlearn.evaluate.systems.System` of a system or run name: the built-in
        kind (of the name without its seed), with the name's ``custom:`` overrides if any."""
        if name not in self.custom:
            return SYSTEMS[name]
        kind = SYSTEMS.get(unseeded(name), Trained(name))
        return kind.renamed(name, self.custom[name])

    def runs(self, system: str) -> list[str]:
        """The runs of a system: one per seed of ``seeds`` (prompting baselines: one)."""
        if not self.system(system).trains or not self.seeds_of(system):
            return [system]
        return [seeded(system, k) for k in self.seeds_of(system)]

    def seeds_of(self, system: str) -> list[int]:
        if isinstance(self.seeds, dict):
            return list(self.seeds.get(system, self.seeds.get("default", [])))
        return list(self.seeds or [])

    @classmethod
    def from_yaml(cls, path, overrides: Sequence[str] = ()) -> "AblateConfig":
        from ..train import read_yaml

        d = read_yaml(path, overrides, "--set eval.n_test=50 or --set train.max_steps=20")
        return cls.from_dict(d, where=str(path))

    @property
    def out(self) -> Path:
        return Path(self.output_dir or f"results/{self.name}")

    @property
    def work(self) -> Path:
        return Path(self.work_dir or f"runs/ablate/{self.name}")

    def train_config(self, system: str):
        """The TrainConfig of a trained system: the shared block plus the system's overrides
        (dotted keys, :func:`qlearn.config.set_dotted`)."""
        from ..config import set_dotted
        from ..errors import ConfigError
        from ..train import TrainConfig

        d = copy.deepcopy(self.train)
        for key, value in self.system(system).overrides.items():
            try:
                set_dotted(d, key, value)
            except ConfigError as e:
                raise ConfigError(f"system {system!r}: override {e}") from None
        d["output_dir"] = str(self.work / "runs" / slug(system))
        return TrainConfig.from_dict(d, where=f"system {system!r}")


def _flat_contrastive(recipe: dict) -> dict:
    """The recipe with its ``contrastive:`` keys inside ``model:``, as recipes were before
    ContrastiveConfig: the replies cached then keep their key (the same training)."""
    if not isinstance(recipe, dict) or not isinstance(recipe.get("contrastive"), dict):
        return recipe
    recipe = dict(recipe)
    model = recipe.get("model")
    recipe["model"] = {**(model if isinstance(model, dict) else {}), **recipe.pop("contrastive")}
    return recipe


def _write_json(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, ensure_ascii=False, indent=1), encoding="utf-8")


def shareable(source: str) -> bool:
    """Whether replies to ``source``'s windows may be committed: invented dialogues (synthetic,
    planted-*) or a source whose record says so (:attr:`qlearn.data.sources.Source.shareable`)."""
    from ..data.sources import SOURCES

    return source == "synthetic" or source.startswith("planted") or (
        source in SOURCES and SOURCES[source].shareable)


def seeded(system: str, seed: int) -> str:
    return f"{system} [seed {seed}]"


def unseeded(run: str) -> str:
    """The system of a run name (``"FT [seed 7]"`` -> ``"FT"``)."""
    return re.sub(r" \[seed -?\d+\]$", "", run)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "system"


def subset(windows: Sequence, n: int | None, seed: int) -> list:
    """A seeded subset of ``n`` windows in their original order (all when n is None or larger)."""
    if n is None or n >= len(windows):
        return list(windows)
    keep = set(random.Random(seed).sample(range(len(windows)), n))
    return [w for i, w in enumerate(windows) if i in keep]


class Grid:
    """Runs one AblateConfig: data once, every system's replies (cached), scores, table, chart."""

    def __init__(self, cfg: AblateConfig, command: str | None = None):
        self.cfg, self.command = cfg, command
        self._base = self._embedder = None

    # ---- shared pieces ----
    def data(self):
        from ..train import TrainConfig, load_data

        base_cfg = TrainConfig.from_dict({**copy.deepcopy(self.cfg.train), "output_dir": str(self.cfg.work)})
        ds, n_clusters = load_data(base_cfg)
        ev = self.cfg.eval
        self.ds = ds
        self.test = subset(ds.test, ev.n_test, ev.seed)
        self.val = subset(ds.val, ev.n_val, ev.seed)
        self.lang = guess_lang(w.reply for w in ds.train[:300])
        self.info = {"source": ds.source, "responder": ds.responder, "queriers": len(ds.queriers),
                     "train": len(ds.train), "val": len(ds.val), "test": len(ds.test),
                     "test_used": len(self.test), "val_used": len(self.val), "clusters": n_clusters,
                     "lang": self.lang, "base_model": base_cfg.base_model}
        return ds

    def base(self):
        if self._base is None:
            from ..train import TrainConfig

            tc = TrainConfig.from_dict(copy.deepcopy(self.cfg.train))
            self._base = base_lm(tc.base_model, tc.seed)
        return self._base

    def embedder(self):
        """MiniLM for English; None for Chinese, so that Few-shot and the asker classifier each fit
        the language-fit embedder on their own training texts (``qlearn.cluster.fit_embedder``)."""
        if getattr(self, "lang", "en") == "zh":
            return None
        if self._embedder is None:
            from ..assets import load_embedder

            self._embedder = load_embedder("minilm")
        return self._embedder

    def gen_kwargs(self) -> dict:
        """The decoding settings of ``eval:`` as keyword arguments of the reply functions."""
        ev = self.cfg.eval
        return dict(max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size, do_sample=ev.do_sample)

    # ---- one system ----
    def replies(self, system: str) -> dict:
        """``{"predictions", "ids", "checkpoint", "val_rougeL", "train_s", "gen_s"}``, cached on disk."""
        path = self.cfg.work / "replies" / f"{slug(system)}.json"
        ids = [w.id for w in self.test]
        keys = self._keys(system, ids)
        cached = self._cached(path, keys)
        if cached is not None:
            self._keep(path, cached)
            return cached
        rec = {"system": system, "key": keys[0], "ids": ids, "checkpoint": None, "val_rougeL": None,
               "train_s": 0.0}
        generate = self.cfg.system(system).prepare(self, system, rec)
        start = time.perf_counter()
        rec["predictions"] = generate()
        rec["gen_s"] = round(time.perf_counter() - start, 1)
        self._store(path, rec)
        return rec

    def _kept(self, path: Path) -> Path | None:
        """Where ``keep_replies`` keeps a copy of the work-folder cache file ``path``."""
        if not self.cfg.keep_replies:
            return None
        return self.cfg.out / "cache" / path.relative_to(self.cfg.work)

    def _cached(self, path: Path, keys: tuple[str, ...]) -> dict | None:
        """A cache file's record if its key is one of ``keys``: from the work folder, else the kept
        copy."""
        for p in (path, self._kept(path)):
            if p is not None and p.exists():
                cached = json.loads(p.read_text(encoding="utf-8"))
                if cached.get("key") in keys:
                    return cached
        return None

    def _keep(self, path: Path, rec: dict) -> None:
        """With ``keep_replies``, write the kept copy of a record read from the work folder when
        the copy is missing or differs (a cache hit does not rewrite what is already there)."""
        kept = self._kept(path)
        if kept is not None and (not kept.exists() or json.loads(kept.read_text(encoding="utf-8")) != rec):
            _write_json(kept, rec)

    def _store(self, path: Path, rec: dict) -> None:
        """Write a cache file to the work folder and, with ``keep_replies``, its kept copy."""
        for p in (path, self._kept(path)):
            if p is not None:
                _write_json(p, rec)

    def _keys(self, system: str, ids: list) -> tuple[str, str]:
        """``(key, legacy)``: what a system's replies depend on (its recipe, the decoding settings,
        the windows), hashed; ``legacy`` also hashes the run folder (``train.output_dir``), as keys
        written before 2026-12-02 did, so that their caches are still found (read-only)."""
        recipe = (self.cfg.train if not self.cfg.system(system).trains
                  else self.cfg.train_config(system).to_dict())
        recipe = _flat_contrastive(recipe)
        ev = dataclasses.asdict(self.cfg.eval)
        what = {"system": system, "recipe": recipe, "ids": ids,
                "eval": {k: ev[k] for k in ("n_val", "select_on_val", "max_new_tokens", "do_sample", "seed")}}
        def digest(d):
            return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()

        # where a run is written is not what it is: a moved work_dir reuses the kept replies
        where = {k: v for k, v in recipe.items() if k != "output_dir"}
        return digest({**what, "recipe": where}), digest(what)

    def train_and_select(self, system: str, rec: dict):
        """Train ``system`` (unless finished) and load its checkpoint with the best validation
        ROUGE-L; returns ``(model, tokenizer, rec)``."""
        from ..train import train

        tc = self.cfg.train_config(system)
        run = Path(tc.output_dir)
        if not (run / "final").exists():
            start = time.perf_counter()
            train(tc)
            rec["train_s"] = round(time.perf_counter() - start, 1)
        cands = checkpoints(run)
        if not self.cfg.eval.select_on_val or len(cands) == 1 or not self.val:
            rec["checkpoint"] = cands[-1].name
            return (*load_trained(cands[-1], tc), rec)
        best = None
        refs = [w.reply for w in self.val]
        for c in cands:  # model selection on the validation split only
            model, tok = load_trained(c, tc)
            score = rouge_l(model_replies(model, tok, self.val, **self.gen_kwargs()), refs, self.lang)
            print(f"qlearn ablate: {system} {c.name}: val ROUGE-L {score:.2f}")
            if best is None or score > best[0]:
                best = (score, c, model, tok)
        rec["checkpoint"], rec["val_rougeL"] = best[1].name, round(best[0], 3)
        return best[2], best[3], rec

    def differentiation(self, system: str, rec: dict) -> dict:
        """Reply change and asker recovery; systems without one model to probe are skipped
        (prompting baselines other than Zero-shot: their system turn would have to be rebuilt
        per asker; per-querier LoRA: one model per querier)."""
        from .differentiation import AskerClassifier, differentiation

        ev = self.cfg.eval
        probe = self.cfg.system(system).probe_model(self, system, rec)
        if probe is None:
            return {}
        model, tok = probe
        if not hasattr(self, "_asker_clf"):
            from .differentiation import top_askers

            self._asker_clf = AskerClassifier(self.embedder()).fit(
                self.ds.train, top_askers(self.ds.train, ev.diff_askers))
        sub = dataclasses.replace(self.ds, test=self.test) if dataclasses.is_dataclass(self.ds) else self.ds
        res = differentiation(model, tok, sub, ev.diff_windows, ev.diff_askers,
                              classifier=self._asker_clf, **self.gen_kwargs())
        return res.row()

    # ---- everything ----
    def run(self) -> Path:
        cfg = self.cfg
        self.data()
        print(f"qlearn ablate: {self.info}")
        refs = [w.reply for w in self.test]
        checker = self.checker()
        runs_of = {s: cfg.runs(s) for s in cfg.systems}
        recs, rows = {}, []
        for system, runs in runs_of.items():
            for run in runs:
                print(f"qlearn ablate: === {run} ===")
                recs[run] = self.replies(run)
        # per window: the mean over a system's seeds (paired tests compare these)
        per_run = {r: rouge_l_scores(rec["predictions"], refs, self.lang) for r, rec in recs.items()}
        per_window = {s: list(np.mean([per_run[r] for r in rs], axis=0)) for s, rs in runs_of.items()}
        fit_run, fit = {}, {}
        if checker:
            fit_run = {r: [100 * x for x in asker_fit_scores(rec["predictions"], *checker)]
                       for r, rec in recs.items()}
            fit = {s: list(np.mean([fit_run[r] for r in rs], axis=0)) for s, rs in runs_of.items()}
        ref_sys = self.reference(per_window, fit)
        seed = cfg.eval.seed
        for system, runs in runs_of.items():
            scored = [score_all(recs[r]["predictions"], refs, self.lang, cfg.eval.stopwords, seed)
                      for r in runs]
            row = {"system": system, **{k: float(np.mean([d[k] for d in scored])) for k in scored[0]}}
            row["n"] = len(refs)
            if len(runs) > 1:  # CI over windows of the seed-averaged per-window score
                ci = bootstrap_ci(per_window[system], seed=seed)
                row.update(rougeL=ci.mean, rougeL_low=ci.low, rougeL_high=ci.high, seeds=len(runs),
                           rougeL_seeds="/".join(f"{np.mean(per_run[r]):.2f}" for r in runs))
            if checker:
                ci = bootstrap_ci(fit[system], seed=seed)
                shares = [asker_fit(recs[r]["predictions"], *checker, seed=seed) for r in runs]
                row.update(asker_fit=ci.mean, asker_fit_low=ci.low, asker_fit_high=ci.high,
                           other_rule=100 * float(np.mean([x["other_rule"] for x in shares])),
                           no_rule=100 * float(np.mean([x["no_rule"] for x in shares])),
                           chance=100 * float(np.mean([x["chance"] for x in shares])))
                if len(runs) > 1:
                    row["asker_fit_seeds"] = "/".join(f"{np.mean(fit_run[r]):.1f}" for r in runs)
            if ref_sys and system != ref_sys:
                t = paired_test(per_window[system], per_window[ref_sys], seed=seed)
                row.update({f"diff_vs_{slug(ref_sys)}": t.diff, f"p_vs_{slug(ref_sys)}": t.p_value})
                if checker:
                    t = paired_test(fit[system], fit[ref_sys], seed=seed)
                    row.update({f"fit_diff_vs_{slug(ref_sys)}": t.diff,
                                f"fit_p_vs_{slug(ref_sys)}": t.p_value})
            if cfg.eval.diff_windows and system in cfg.eval.diff_systems:
                row.update(self.differentiation(runs[0], recs[runs[0]]))
            first = recs[runs[0]]
            row.update({k: first.get(k) for k in ("checkpoint", "val_rougeL")})
            row.update({k: round(float(np.mean([recs[r].get(k) or 0.0 for r in runs])), 1)
                        for k in ("train_s", "gen_s")})  # per run (the mean over seeds)
            rows.append(row)
        if ref_sys:
            cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, reference=ref_sys))
        out = write_outputs(rows, cfg, self.info, self.command)
        self._write_runs(recs, per_run, fit_run, out)
        if cfg.eval.curve_systems:
            curve = self.curve(checker)
            _write_csv(out / "learning_curve.csv", curve)
            plot_curve(curve, out / "learning_curve.png",
                       zero_shot=None if "Zero-shot" not in fit else float(np.mean(fit["Zero-shot"])))
        return out

    def checker(self):
        """``(askers, rules)`` of the test windows when the data has a planted rule, else None."""
        if not str(self.ds.source).startswith("planted"):
            return None
        from .asker_fit import window_rules

        return window_rules(self.test)

    def reference(self, per_window: dict, fit: dict) -> str | None:
        """The system every other is tested against; ``"best Ours"``: the Ours variant with the
        highest asker-fit (ROUGE-L when there is no checker)."""
        ref = self.cfg.eval.reference
        if ref == "best Ours":
            ours = [s for s in per_window if s.startswith("Ours")]
            score = fit or per_window
            return max(ours, key=lambda s: float(np.mean(score[s]))) if ours else None
        return ref if ref in per_window else None

    def _write_runs(self, recs: dict, per_run: dict, fit_run: dict, out: Path) -> None:
        """runs.csv: one row per (system, seed) run with its scores and compute time."""
        with open(out / "runs.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["run", "system", "seed", "rougeL", "asker_fit", "checkpoint", "train_s",
                        "gen_s"])
            for run, rec in recs.items():
                system = unseeded(run)
                tseed = self.cfg.train_config(run).seed if self.cfg.system(system).trains else None
                w.writerow([run, system, tseed, round(float(np.mean(per_run[run])), 3),
                            round(float(np.mean(fit_run[run])), 2) if run in fit_run else "",
                            rec.get("checkpoint"), rec.get("train_s"), rec.get("gen_s")])

    def curve(self, checker) -> list[dict]:
        """Every saved checkpoint of the ``curve_systems`` runs, scored on test (cached)."""
        refs, ids = [w.reply for w in self.test], [w.id for w in self.test]
        rows = []
        for system in self.cfg.eval.curve_systems:
            for run in self.cfg.runs(system):
                tc = self.cfg.train_config(run)
                path = self.cfg.work / "curve" / f"{slug(run)}.json"
                keys = self._keys(run, ids)
                cache = self._cached(path, keys) or {"key": keys[0], "points": {}}
                run_dir = Path(tc.output_dir)
                for c in checkpoints(run_dir) if run_dir.exists() else []:  # kept points suffice
                    step = int(c.name.split("-")[1]) if c.name.startswith("checkpoint-") else tc.max_steps
                    if str(step) not in cache["points"]:
                        model, tok = load_trained(c, tc)
                        cache["points"][str(step)] = model_replies(model, tok, self.test, **self.gen_kwargs())
                        self._store(path, cache)
                self._keep(path, cache)
                for step in sorted(cache["points"], key=int):
                    preds = cache["points"][step]
                    step = int(step)
                    row = {"system": system, "run": run, "seed": tc.seed, "step": step,
                           "rougeL": rouge_l(preds, refs, self.lang)}
                    if checker:
                        row["asker_fit"] = 100 * float(np.mean(asker_fit_scores(preds, *checker)))
                    rows.append(row)
        return rows


def _write_csv(path, rows: list[dict], digits: int | None = None) -> None:
    """Rows (dicts; columns in order of first appearance) as CSV, floats rounded to ``digits``."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, digits) if digits is not None and isinstance(v, float) else v)
                        for k, v in r.items()})


def plot_curve(rows: list[dict], path=None, zero_shot: float | None = None, title: str = ""):
    """The learning curve (rows of ``learning_curve.csv``): asker-fit (ROUGE-L without a checker)
    against the optimizer step, one thin line per seed and the seed mean, per system."""
    plt = _pyplot(path)

    key = "asker_fit" if rows and "asker_fit" in rows[0] else "rougeL"
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, system in enumerate(dict.fromkeys(r["system"] for r in rows)):
        color = f"C{i}"
        mine = [r for r in rows if r["system"] == system]
        for run in dict.fromkeys(r["run"] for r in mine):
            pts = sorted((r["step"], r[key]) for r in mine if r["run"] == run)
            ax.plot(*zip(*pts), color=color, alpha=0.3, lw=1)
        steps = sorted({r["step"] for r in mine})
        mean = [np.mean([r[key] for r in mine if r["step"] == s]) for s in steps]
        ax.plot(steps, mean, color=color, lw=2.5, marker="o", label=f"{system} (mean of seeds)")
    if zero_shot is not None and key == "asker_fit":
        ax.axhline(zero_shot, color="gray", ls="--", lw=1, label="Zero-shot")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("asker-fit % (test)" if key == "asker_fit" else "ROUGE-L (test)")
    ax.set_title(title or "Learning curve on the test split (figure only; no selection)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, path)


def _fmt(v, digits=2):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _selection_note(rows: list[dict], cfg: AblateConfig) -> str:
    if not any(r.get("checkpoint") for r in rows):
        return ""
    if cfg.eval.select_on_val:
        return " Trained systems: the checkpoint with the best validation ROUGE-L (never test)."
    return " Trained systems: their final weights (no checkpoint selection, `select_on_val: false`)."


def _fit_note(rows: list[dict], cfg: AblateConfig) -> str:
    if not any("asker_fit" in r for r in rows):
        return ""
    seeds = f" Systems with several seeds: scores averaged over seeds per window, then CIs and " \
            f"paired tests over windows (seeds {cfg.seeds})." if cfg.seeds else ""
    return (" Asker-fit: % of replies that open with the asking querier's opener; chance = 100/N "
            "of the replies that open with some querier's opener (N = 4: 25%), 0 for the "
            "'no rule' ones; Δ asker-fit and p: the same paired test on per-window asker-fit." + seeds)


def write_outputs(rows: list[dict], cfg: AblateConfig, info: dict, command: str | None) -> Path:
    """table.csv, table.md, rougeL.png (and asker_fit.png on a planted benchmark) and command.txt
    in ``cfg.out``."""
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "table.csv", rows, digits=4)
    ref = slug(cfg.eval.reference)
    cols = [("ROUGE-L [95% CI]", lambda r: f"{r['rougeL']:.2f} [{r['rougeL_low']:.2f}, {r['rougeL_high']:.2f}]"),
            ("ROUGE-L (paper)", lambda r: _fmt(r["rougeL_paper"])),
            ("BLEU-1", lambda r: _fmt(r["bleu1"])), ("BLEU-4", lambda r: _fmt(r["bleu4"])),
            ("Distinct-2", lambda r: _fmt(r["distinct2"])),
            (f"Δ vs {cfg.eval.reference} (p)", lambda r: (f"{r[f'diff_vs_{ref}']:+.2f} "
                                                          f"({r[f'p_vs_{ref}']:.3f})")
             if f"diff_vs_{ref}" in r else "–")]
    if any("asker_recovery" in r for r in rows):
        cols += [("reply change", lambda r: _fmt(r.get("reply_change"), 1)),
                 ("asker recovery (chance)", lambda r: f"{r['asker_recovery']:.1f} ({r['chance']:.0f})"
                  if "asker_recovery" in r else "–")]
    if any("asker_fit" in r for r in rows):  # the planted benchmark's checker
        cols = [("asker-fit % [95% CI]", lambda r: f"{r['asker_fit']:.1f} [{r['asker_fit_low']:.1f}, "
                 f"{r['asker_fit_high']:.1f}]"),
                (f"Δ asker-fit vs {cfg.eval.reference} (p)", lambda r: (
                    f"{r[f'fit_diff_vs_{ref}']:+.1f} ({r[f'fit_p_vs_{ref}']:.3f})")
                 if f"fit_diff_vs_{ref}" in r else "–"),
                ("no rule %", lambda r: _fmt(r["no_rule"], 1))] + [
                    c for c in cols if c[0].startswith(("ROUGE-L [", "Δ vs", "reply", "asker rec"))]
    if any("seeds" in r for r in rows):
        cols += [("per seed: asker-fit / ROUGE-L", lambda r: f"{r.get('asker_fit_seeds', '–')} / "
                  f"{r['rougeL_seeds']}" if "seeds" in r else "–"),
                 ("train s / gen s per run", lambda r: f"{_fmt(r.get('train_s'), 0)} / "
                  f"{_fmt(r.get('gen_s'), 0)}")]
    cols += [("checkpoint (val ROUGE-L)", lambda r: f"{r['checkpoint']} ({_fmt(r['val_rougeL'])})"
              if r.get("checkpoint") else "–")]
    lines = [f"# {cfg.name}: baselines, full method and ablations", ""]
    if command:
        lines += ["Made with:", "", f"```\n{command}\n```", ""]
    lines += [", ".join(f"{k}: {v}" for k, v in info.items()), "",
              f"Metrics ×100 on the same {info.get('test_used')} test windows; 95% bootstrap CIs; "
              f"Δ and p: paired difference in ROUGE-L and a sign-flip permutation test against "
              f"{cfg.eval.reference}." + _selection_note(rows, cfg) + _fit_note(rows, cfg), "",
              "| System | " + " | ".join(c for c, _ in cols) + " |",
              "|---|" + "---|" * len(cols)]
    lines += ["| " + r["system"] + " | " + " | ".join(fn(r) for _, fn in cols) + " |" for r in rows]
    (out / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if command:
        (out / "command.txt").write_text(command + "\n", encoding="utf-8")
    plot_table(rows, out / "rougeL.png", title=f"{info.get('responder')} · {info.get('base_model')}")
    if all("asker_fit" in r for r in rows):
        plot_fit(rows, out / "asker_fit.png", title=f"{info.get('source')} · {info.get('base_model')}")
    print((out / "table.md").read_text(encoding="utf-8"))
    return out


def _pyplot(path):
    """matplotlib.pyplot, on the file-only Agg backend when the figure goes to ``path``."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path):
    """Lay out ``fig``; save and close it when ``path`` is given; return it."""
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        _pyplot(path).close(fig)
    return fig


def plot_table(rows: list[dict], path=None, title: str = ""):
    """Horizontal bars of ROUGE-L (rouge-score and paper variant) with 95% CIs per system."""
    plt = _pyplot(path)

    names = [r["system"] for r in rows][::-1]
    rs = rows[::-1]
    colors = [system_color(n) for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.5), sharey=True)
    for ax, key, label in ((axes[0], "rougeL", "ROUGE-L (rouge-score, CJK chars)"),
                           (axes[1], "rougeL_paper", "ROUGE-L (paper: rouge 1.0.x)")):
        mean = np.array([r[key] for r in rs])
        err = np.array([[r[key] - r[f"{key}_low"], r[f"{key}_high"] - r[key]] for r in rs]).T
        ax.barh(names, mean, xerr=err, color=colors, capsize=3, alpha=0.85)
        ax.set_xlabel(label + " ×100, 95% CI")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    return _finish(fig, path)


def plot_fit(rows: list[dict], path=None, title: str = ""):
    """Asker-fit (planted benchmarks) with 95% CIs per system, each system's chance level marked."""
    plt = _pyplot(path)

    rs = rows[::-1]
    names = [r["system"] for r in rs]
    mean = np.array([r["asker_fit"] for r in rs])
    err = np.array([[r["asker_fit"] - r["asker_fit_low"], r["asker_fit_high"] - r["asker_fit"]]
                    for r in rs]).T
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.5))
    ax.barh(names, mean, xerr=err, color=[system_color(n) for n in names], capsize=3, alpha=0.85)
    ax.scatter([r["chance"] for r in rs], names, marker="|", s=250, color="k", zorder=3,
               label="chance: 25% of the replies that use some opener")
    ax.set_xlabel("asker-fit % (reply opens with the asker's opener), 95% CI over test windows")
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    return _finish(fig, path)


def ablate(config: AblateConfig | str, overrides: Sequence[str] = (), command: str | None = None) -> Path:
    """Run the grid of an :class:`AblateConfig` (or a YAML file); returns the results folder."""
    cfg = config if isinstance(config, AblateConfig) else AblateConfig.from_yaml(config, overrides)
    return Grid(cfg, command).run()


def evaluate_run(model: str, data, out=None, split: str = "test", n: int | None = None,
                 baselines: Sequence[str] = (), seed: int = 0, max_new_tokens: int = 64,
                 batch_size: int = 8, do_sample: bool = False, command: str | None = None) -> Path:
    """``qlearn evaluate``: score one model (a ``qlearn train`` run folder, or a base model name =
    Zero-shot) on a dataset (an MQDialog folder or a Dataset), optionally beside prompting
    baselines on the same windows; writes table.md / table.csv / rougeL.png to ``out``."""
    from ..model import CONFIG_FILE

    if isinstance(data, (str, Path)):
        from ..data import load_mqdialog

        data = load_mqdialog(data)
    from ..errors import InputError

    if split not in ("train", "val", "test"):
        raise InputError(f"split={split!r}: use train, val or test")
    if n is not None and n < 1:
        raise InputError(f"n={n}: evaluate at least one window (n=None for all "
                         f"{len(getattr(data, split))} {split} windows)")
    windows = subset(getattr(data, split), n, seed)
    if not windows:
        raise InputError(f"the dataset {data.source}/{data.responder} has no {split} windows; "
                         "rebuild it or choose another --split")
    lang = guess_lang(w.reply for w in windows)
    gen = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=do_sample)
    folder = Path(model)
    trained = folder.is_dir() and any((folder / p / CONFIG_FILE).exists() for p in ("", "final"))
    preds, base, seed_lm = {}, None, 42
    if trained:
        m, tok = load_trained(folder)
        name = folder.name if folder.name not in ("final", "") else folder.parent.name
        preds[name] = model_replies(m, tok, windows, **gen)
        from ..train import TrainConfig

        cfg_path = next(p for p in (folder / "train_config.yaml", folder.parent / "train_config.yaml")
                        if p.exists())
        tc = TrainConfig.from_yaml(cfg_path, saved=True)
        base_name, seed_lm = tc.base_model, tc.seed
    else:
        name, base_name = f"Zero-shot ({model})", model
        base = base_lm(model)
        preds[name] = model_replies(*base, windows, **gen)
    for b in baselines:
        if base is None:
            base = base_lm(base_name, seed_lm)
        preds[b] = baseline_replies(b, *base, windows, data.train, **gen)
    refs = [w.reply for w in windows]
    per = {s: rouge_l_scores(p, refs, lang) for s, p in preds.items()}
    rows = []
    for s, p in preds.items():
        row = {"system": s, **score_all(p, refs, lang, seed=seed)}
        if s != name:
            t = paired_test(per[s], per[name], seed=seed)
            row.update({f"diff_vs_{slug(name)}": t.diff, f"p_vs_{slug(name)}": t.p_value})
        rows.append(row)
    cfg = AblateConfig(name=f"evaluate {name}", systems=[], output_dir=str(out or Path("runs/evaluate") / slug(name)),
                       eval=EvalConfig(reference=name))
    info = {"source": data.source, "responder": data.responder, "split": split,
            "test_used": len(windows), "lang": lang, "base_model": base_name}
    return write_outputs(rows, cfg, info, command)
