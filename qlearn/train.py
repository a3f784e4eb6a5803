"""Training: ``L = L_LM + λ·L_QC`` on transformers' ``Trainer`` (docs/method.md §5-6).

``train(TrainConfig(...))`` or ``qlearn train --config configs/quick-cpu.yaml [--set k=v] [--resume]``:

1. data: ``qlearn.data.build_dataset(source, responder, data_dir)`` (or the invented
   ``source: synthetic``), queries clustered with ``qlearn.cluster.assign_clusters``
   (``n_clusters: 1`` skips clustering);
2. model: ``QuerierAwareLM.from_base(base, config.model)`` (a ``QARConfig``) and a
   ``QuerierContrastiveLoss`` built from ``config.contrastive`` (a ``ContrastiveConfig``);
3. the querier-identifiability probe on held-out windows (before);
4. ``Trainer`` (mixed precision, gradient accumulation and checkpointing, checkpoints and resume,
   DDP/DeepSpeed ZeRO-2 under ``accelerate launch``/``torchrun``; FSDP and ZeRO-3 are refused),
   logging ``metrics.jsonl``;
5. ``<output_dir>/final/``: the model (``save_pretrained``: peft's adapter files plus the
   querier-specific weights) and the contrastive state; the probe again (after);
   ``loss_curves.png``; the model card ``README.md`` (:mod:`qlearn.card`).

Every checkpoint holds the trainable weights *and* the contrastive views and memories, so
``--resume`` continues exactly where the run stopped.

This module is the recipe and the orchestration; the parts it runs live in :mod:`qlearn.trainer`
(the training module, the ``Trainer`` subclass, its callbacks and arguments; imported inside the
functions that use it, so that ``import qlearn.train`` does not load transformers' ``Trainer``),
:mod:`qlearn.probe` (the probe) and :mod:`qlearn.checkpoints` (resume).
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .contrastive import ContrastiveConfig, QuerierContrastiveLoss
from .data.pipeline import BuildConfig
from .model import QARConfig, QuerierAwareLM
from .probe import (PROBE_FILE, REPS_FILE, knn_probe, probe_sample, querier_probe,
                    querier_representations, read_querier_reps)

__all__ = [
    "METRICS_FILE", "PRECISIONS", "TrainConfig", "build_model", "check_queriers", "keep_top_queriers",
    "load_data", "plot_metrics", "read_metrics", "read_yaml", "train",
    # these live in qlearn.probe and stay importable from here for existing code and the notebooks
    "PROBE_FILE", "REPS_FILE", "knn_probe", "probe_sample", "querier_probe",
    "querier_representations", "read_querier_reps",
]

METRICS_FILE = "metrics.jsonl"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def read_yaml(path, overrides: Sequence[str] = (), example: str = "--set a.b=1") -> dict:
    """A YAML recipe as a dict, with ``--set key.sub=value`` overrides (values parsed as YAML;
    :func:`qlearn.config.apply_overrides`)."""
    import yaml

    from .config import apply_overrides
    from .errors import ConfigError

    try:
        d = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the recipe ({e.strerror or e}); see configs/ for "
                          "examples") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: a recipe is a mapping (key: value), not a {type(d).__name__}")
    return apply_overrides(d, overrides, str(path), example)


@dataclass
class TrainConfig:
    """One training run. The defaults are the official settings (docs/method.md §6); YAML recipes in
    ``configs/`` set every field. ``model`` is the :class:`QARConfig` (the architecture),
    ``contrastive`` the :class:`~qlearn.contrastive.ContrastiveConfig` (the querier-contrastive
    loss and its weight), ``data`` the :class:`BuildConfig`."""

    # data
    source: str = "bigbang"  # friends, bigbang, modernfamily, swordsman, palace, chitchat, synthetic, planted-*
    responder: str | None = "Sheldon"
    data_dir: str | None = None  # transcripts root; None = $QLEARN_DATA_ROOT
    data: BuildConfig = field(default_factory=BuildConfig)
    n_clusters: int | None = None  # None = the paper's k for the responder; 1 = no clustering
    max_queriers: int | None = None  # keep only the most frequent queriers (quick runs)
    max_train_windows: int | None = None  # a seeded subset of the training windows (quick runs)
    max_eval_windows: int | None = None  # a seeded subset of val and of test (quick runs)
    cluster_batches: bool = False  # True: every batch from one cluster (official: random)
    max_length: int = 592
    # model
    base_model: str = "smollm2-135m"  # short name, hub id or folder
    model: QARConfig = field(default_factory=QARConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    # optimisation
    output_dir: str = "runs/train"
    epochs: float = 20
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 4  # per device
    grad_accum: int = 8
    lr: float = 2e-4
    adam_betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    warmup: float = 0.01  # < 1: share of the steps; >= 1: steps
    lr_schedule: str = "constant_with_warmup"  # any transformers scheduler name, e.g. "cosine"
    precision: str = "auto"  # fp32, fp16, bf16 or auto: GPU bf16 if supported, else fp16;
    # CPU bf16 where it is native (AVX512-BF16/AMX: qlearn.trainer.cpu_has_bf16), else fp32
    gradient_checkpointing: bool = True
    logging_steps: int = 10
    save_steps: int | None = None  # None = a checkpoint every epoch (official)
    save_total_limit: int | None = 2
    seed: int = 42
    # querier-identifiability probe (k-NN on held-out windows); 0 windows = no probe
    probe_windows: int = 200
    probe_k: int = 5
    trainer_args: dict = field(default_factory=dict)  # other TrainingArguments, e.g. deepspeed: ds.json

    # ---- YAML ----------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict, where: str = "config", saved: bool = False) -> "TrainConfig":
        """The recipe ``d`` checked (:func:`qlearn.config.build`: unknown keys, types, nested
        blocks) and its ranges (:meth:`check`). A contrastive key under ``model:`` is refused
        naming its new place (``move model.view_dim to contrastive.view_dim``); ``saved=True``
        reads a ``train_config.yaml`` that qlearn wrote before the split, moving those keys."""
        from .config import build
        from .model import refuse_contrastive_keys, split_legacy

        if isinstance(d, dict) and isinstance(d.get("model"), dict):
            if saved:  # a run folder of older qlearn: the same run in the new layout
                model, legacy = split_legacy(d["model"])
                contrastive = d.get("contrastive")
                d = {**d, "model": model,
                     "contrastive": {**legacy, **(contrastive if isinstance(contrastive, dict) else {})}}
            refuse_contrastive_keys(d["model"], where)
        cfg = build(cls, d, where)
        cfg.check(where)
        return cfg

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict()
        d["contrastive"] = self.contrastive.to_dict()
        d["data"] = dataclasses.asdict(self.data)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_yaml(cls, path, overrides: Sequence[str] = (), saved: bool = False) -> "TrainConfig":
        """A YAML recipe with ``--set`` overrides; ``saved=True`` for a run folder's
        ``train_config.yaml`` (one written before the contrastive block still loads)."""
        d = read_yaml(path, overrides, "--set output_dir=runs/x or --set model.rank=16")
        return cls.from_dict(d, where=str(path), saved=saved)

    def to_yaml(self, path) -> None:
        import yaml

        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True),
                              encoding="utf-8")

    def check(self, where: str = "config") -> None:
        """Ranges and combinations, before any work starts (types: :meth:`from_dict`)."""
        from .config import check_range as need
        from .errors import ConfigError

        if self.precision not in PRECISIONS:
            raise ConfigError(f"{where}: precision={self.precision!r}: use one of {PRECISIONS}")
        if self.n_clusters is not None and self.n_clusters < 1:
            raise ConfigError(f"{where}: n_clusters={self.n_clusters}: use >= 1 (1 = no "
                              "clustering) or null (the paper's k)")
        need(self.max_steps == -1 or self.max_steps > 0, where, "max_steps", self.max_steps,
             "use -1 (epochs decide) or a positive number of optimizer steps")
        need(self.max_steps > 0 or self.epochs > 0, where, "epochs", self.epochs,
             "use a positive number of epochs (or max_steps > 0)")
        for name in ("batch_size", "grad_accum", "logging_steps", "probe_k"):
            need(getattr(self, name) >= 1, where, name, getattr(self, name), "use an integer >= 1")
        for name in ("save_steps", "save_total_limit", "max_queriers", "max_train_windows",
                     "max_eval_windows"):
            v = getattr(self, name)
            need(v is None or v >= 1, where, name, v, "use an integer >= 1, or null")
        need(self.max_length >= 16, where, "max_length", self.max_length,
             "use at least 16 tokens (a window needs a query and a reply)")
        need(self.lr > 0, where, "lr", self.lr, "the learning rate must be > 0")
        need(all(0 <= b < 1 for b in self.adam_betas), where, "adam_betas", self.adam_betas,
             "both betas must be in [0, 1)")
        for name in ("weight_decay", "max_grad_norm", "warmup"):
            need(getattr(self, name) >= 0, where, name, getattr(self, name), "must be >= 0")
        need(self.probe_windows >= 0, where, "probe_windows", self.probe_windows,
             "use 0 (no probe) or a positive number")
        b = self.data
        need(0 < b.test_fraction < 1, where, "data.test_fraction", b.test_fraction, "use 0 < x < 1")
        need(0 <= b.val_fraction < 1, where, "data.val_fraction", b.val_fraction, "use 0 <= x < 1")
        need(b.max_chars > 0, where, "data.max_chars", b.max_chars, "use a positive length")
        need(0 < b.dedup_threshold <= 1, where, "data.dedup_threshold", b.dedup_threshold,
             "use 0 < x <= 1")
        need(b.session_gap_hours > 0, where, "data.session_gap_hours", b.session_gap_hours,
             "must be > 0")
        if self.max_queriers == 1 and self.model.specific and self.contrastive.qc_weight > 0:
            raise ConfigError(f"{where}: max_queriers=1 with the dual tower: the querier-"
                              "contrastive loss needs >= 2 queriers and would be 0 on every "
                              "step; use max_queriers >= 2, or contrastive.qc_weight=0 / "
                              "model.specific=false to train without it")
        try:
            from transformers.trainer_utils import SchedulerType

            names = [t.value for t in SchedulerType]
        except ImportError:  # pragma: no cover
            names = None
        if names is not None and self.lr_schedule not in names:
            raise ConfigError(f"{where}: lr_schedule={self.lr_schedule!r}: use one of {names}")


# ---- data ------------------------------------------------------------------------------------
def load_data(cfg: TrainConfig):
    """The responder's ``Dataset`` with ``cluster_id`` on every window and the number of clusters."""
    from .data import build_dataset, synthetic_dataset

    if cfg.source == "synthetic":
        ds = synthetic_dataset(seed=cfg.data.seed)  # invented dialogues, its own BuildConfig
    elif cfg.source in ("planted-visible", "planted-hidden"):  # qlearn.data.planted (Chit-Chat)
        from .data.planted import planted_dataset

        ds = planted_dataset(cfg.source.split("-")[1], seed=cfg.data.seed, root=cfg.data_dir)
    else:
        ds = build_dataset(cfg.source, cfg.responder, root=cfg.data_dir, config=cfg.data)
    if cfg.max_queriers is not None:
        ds = keep_top_queriers(ds, cfg.max_queriers)
    for split, n in (("train", cfg.max_train_windows), ("val", cfg.max_eval_windows),
                     ("test", cfg.max_eval_windows)):
        windows = getattr(ds, split)
        if n is not None and len(windows) > n:
            setattr(ds, split, random.Random(cfg.seed).sample(windows, n))
            ds.stats = {**ds.stats, f"{split}_windows_subsampled": f"{n} of {len(windows)}"}
    if cfg.n_clusters == 1:
        for w in ds.train + ds.val + ds.test:
            w.cluster_id = 0
        return ds, 1
    from .cluster import assign_clusters

    clusterer = assign_clusters(ds, cfg.n_clusters)
    return ds, clusterer.n_clusters


def keep_top_queriers(ds, n: int):
    """Keep the ``n`` queriers with the most training windows, renumbered 1..n by frequency."""
    counts = {q: 0 for q in ds.queriers}
    for w in ds.train:
        counts[w.querier] += 1
    kept = sorted(counts, key=lambda q: -counts[q])[:n]
    index = {q: i + 1 for i, q in enumerate(kept)}

    def split(ws):
        return [dataclasses.replace(w, role_pair_id=index[w.querier]) for w in ws if w.querier in index]

    ds = dataclasses.replace(ds, queriers=kept, train=split(ds.train), val=split(ds.val),
                             test=split(ds.test))
    ds.stats = {**ds.stats, "kept_queriers": kept, "max_queriers": n}
    return ds


def build_model(cfg: TrainConfig, n_queriers: int, n_clusters: int, device=None):
    """``(QARTrainingModule, tokenizer)``: the base loaded in the training precision (trainable
    weights stay fp32), wrapped by ``QuerierAwareLM`` (``cfg.model``), plus the contrastive loss
    (``cfg.contrastive``; none for the plain LoRA model, ``model.specific=false``)."""
    from .assets import load_lm, tiny_lm
    from .trainer import QARTrainingModule, resolve_precision

    precision = resolve_precision(cfg)
    if cfg.base_model == "tiny":  # the random 2-layer Llama of the tests
        base, tokenizer = tiny_lm(seed=cfg.seed)
        base = base.to(device or "cpu")
    else:
        base, tokenizer = load_lm(cfg.base_model, dtype="fp32" if precision == "fp32" else precision,
                                  device=None if device is None else str(device))
    torch.manual_seed(cfg.seed)
    model = QuerierAwareLM.from_base(base, cfg.model)
    qc = None
    if cfg.model.specific:
        qc = QuerierContrastiveLoss.from_config(
            cfg.contrastive, dim=base.config.hidden_size, n_queriers=n_queriers,
            n_clusters=n_clusters, init_std=getattr(base.config, "initializer_range", 0.02)
        ).to(model.device)
    return QARTrainingModule(model, qc), tokenizer


def train(config: TrainConfig | str | os.PathLike, resume: bool = False) -> Path:
    """Run one training; returns the run folder (``config.output_dir``). ``resume=True`` continues
    from the last checkpoint there (weights, optimizer, scheduler, RNG, contrastive memories)."""
    from transformers import set_seed

    from .checkpoints import checkpoint_step, last_checkpoint, truncate_metrics
    from .collate import ClusterBatchSampler, Collator
    from .trainer import (PROGRESS_FILE, MetricsLogger, ProgressSaver, QARTrainer, resolve_precision,
                          training_arguments)

    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_yaml(config)
    cfg.check()
    run = Path(cfg.output_dir)
    checkpoint = last_checkpoint(run) if resume else None  # before any work: is there one?
    run.mkdir(parents=True, exist_ok=True)
    set_seed(cfg.seed)
    args = training_arguments(cfg, resolve_precision(cfg))  # sets up DDP under torchrun/accelerate
    ds, n_clusters = load_data(cfg)
    check_queriers(cfg, ds)
    module, tokenizer = build_model(cfg, len(ds.queriers), n_clusters, device=args.device)
    collator = Collator(tokenizer, max_length=cfg.max_length)
    main = args.process_index == 0
    if main:
        cfg.to_yaml(run / "train_config.yaml")
        (run / "data.json").write_text(json.dumps(
            {"source": ds.source, "responder": ds.responder, "queriers": ds.queriers,
             "n_clusters": n_clusters, "train": len(ds.train), "val": len(ds.val),
             "test": len(ds.test), "stats": ds.stats}, indent=2, default=str, ensure_ascii=False))
    probe_set = probe_sample(ds.test, cfg.probe_windows, seed=cfg.seed) if cfg.probe_windows else []
    probe = _read_json(run / PROBE_FILE) if resume else {}
    reps = read_querier_reps(run) if resume and (run / REPS_FILE).exists() else {}
    if probe_set and "before" not in probe and module.contrastive is not None:
        probe["before"], reps["before"] = querier_probe(module.model, collator, probe_set, cfg.probe_k)
        reps["querier"] = np.array([w.querier for w in probe_set])
        if main:  # kept for a resumed run
            print(f"qlearn train: probe before training: {probe['before']}")
            (run / PROBE_FILE).write_text(json.dumps(probe, indent=2))
            np.savez(run / REPS_FILE, **reps)
    if not resume and main:
        (run / METRICS_FILE).unlink(missing_ok=True)
    if checkpoint is not None and main:  # rows logged after the checkpoint are logged again
        probe["resumed_from_step"] = truncate_metrics(run / METRICS_FILE, checkpoint_step(checkpoint))

    sampler = (ClusterBatchSampler([w.cluster_id for w in ds.train], cfg.batch_size, cfg.seed)
               if cfg.cluster_batches else None)
    # a resumed run continues the training time of the interrupted one (probe.json's
    # train_seconds covers every step); collator counts are this process's (resumed_from_step)
    done = _read_json(checkpoint / PROGRESS_FILE) if checkpoint is not None else {}
    start, offset = time.perf_counter(), float(done.get("train_seconds", 0.0))
    callbacks = [MetricsLogger(run / METRICS_FILE),
                 ProgressSaver(collator, lambda: offset + time.perf_counter() - start)]
    trainer = QARTrainer(model=module, args=args, train_dataset=ds.train, data_collator=collator,
                         callbacks=callbacks, cluster_sampler=sampler)
    if args.train_sampling_strategy == "group_by_length":  # token lengths, for the sampler
        with warnings.catch_warnings():  # truncation is reported by the training collator
            warnings.simplefilter("ignore")
            measure = Collator(tokenizer, max_length=cfg.max_length)
            trainer.train_lengths = [len(measure.encode(w)["input_ids"]) for w in ds.train]
    trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    seconds = offset + time.perf_counter() - start
    if collator.stats["truncated_turns"] or collator.stats["truncated_tokens"]:
        print(f"qlearn train: truncated windows: {collator.stats}")

    if probe_set and module.contrastive is not None:
        probe["after"], reps["after"] = querier_probe(module.model, collator, probe_set, cfg.probe_k)
    if main:
        if "after" in probe:
            print(f"qlearn train: probe after training: {probe['after']}")
        module.save(run / "final")
        probe["train_seconds"] = round(seconds, 1)  # every step's, also across a resume
        probe["collator"] = collator.stats
        (run / PROBE_FILE).write_text(json.dumps(probe, indent=2))
        if "after" in reps:
            np.savez(run / REPS_FILE, **reps)
        if (run / METRICS_FILE).exists():
            plot_metrics(run / METRICS_FILE, run / "loss_curves.png")
        from .card import write_model_card

        write_model_card(run)  # README.md: base model and provenance, data, recipe, metrics
    return run


def check_queriers(cfg: TrainConfig, ds) -> None:
    """Refuse a set-up whose querier-contrastive loss is 0 on every step (one querier)."""
    from .errors import ConfigError

    if len(ds.queriers) < 2 and cfg.model.specific and cfg.contrastive.qc_weight > 0:
        raise ConfigError(
            f"{ds.source}/{ds.responder} has {len(ds.queriers)} querier(s) "
            f"({', '.join(ds.queriers) or 'none'}): the querier-contrastive loss needs >= 2 and "
            "would be 0 on every step, so nothing querier-specific is learned. Choose a "
            "responder with several queriers (e.g. Rachel, Ross, Sheldon), lower "
            "data.min_utterances / data.min_segments, or train without it: --set "
            "contrastive.qc_weight=0 (or model.specific=false)")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def read_metrics(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_metrics(metrics_path, out_png=None):
    """L_LM, L_QC and the learning rate against the step; saved to ``out_png`` if given."""
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key, title in zip(axes, ("loss_lm", "loss_qc", "lr"),
                              ("L_LM (responder tokens)", "L_QC (querier contrast)", "learning rate")):
        ax.plot(steps, [r.get(key) for r in rows], marker="o", ms=3)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    if out_png is not None:
        fig.savefig(out_png, dpi=120)
        plt.close(fig)
    return fig
