"""Training on transformers' ``Trainer``: the module it trains (:class:`QARTrainingModule`: the
model and the contrastive loss, ``L = L_LM + λ·L_QC``), the ``Trainer`` subclass whose checkpoints
hold the contrastive state too (:class:`QARTrainer`), its callbacks (``metrics.jsonl``, the progress
file in each checkpoint), the ``TrainingArguments`` of a :class:`~qlearn.train.TrainConfig` and its
precision, and the refusal of sharded states (FSDP, DeepSpeed ZeRO-3).

Importing this module imports transformers' ``Trainer`` (a second or two); ``qlearn.train`` imports
it only when it builds a model or trains.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from .contrastive import QuerierContrastiveLoss
from .model import QuerierAwareLM

CONTRASTIVE_FILE = "contrastive.safetensors"
PROGRESS_FILE = "qlearn_progress.json"  # in each checkpoint: training seconds, collator counts


class QARTrainingModule(nn.Module):
    """The model and the contrastive loss together, so that optimizer, DDP, mixed precision and
    gradient clipping see both. ``forward(**batch)`` returns ``loss, loss_lm, loss_qc``.

    λ (``qc_weight``) is the loss's own ``contrastive.config.qc_weight`` unless given."""

    def __init__(self, model: QuerierAwareLM, contrastive: QuerierContrastiveLoss | None,
                 qc_weight: float | None = None):
        super().__init__()
        self.model, self.contrastive = model, contrastive
        if qc_weight is None:
            qc_weight = contrastive.config.qc_weight if contrastive is not None else 0.0
        self.qc_weight = qc_weight

    def forward(self, input_ids, attention_mask, labels, responder_mask, querier, cluster):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                         responder_mask=responder_mask)
        if self.contrastive is None or out.querier_repr is None:  # the FT baseline: no specific stream
            loss_qc = out.loss.new_zeros(())
        elif self.qc_weight == 0:  # "w/o contrastive": still measured (and memories written)
            with torch.no_grad():
                loss_qc = self.contrastive(out.querier_repr, querier, cluster)
        else:
            loss_qc = self.contrastive(out.querier_repr, querier, cluster)
        loss = out.loss + self.qc_weight * loss_qc
        return {"loss": loss, "loss_lm": out.loss.detach(), "loss_qc": loss_qc.detach()}

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, **kwargs):
        self.model.activation_checkpointing_enable(activation_checkpointing_kwargs, **kwargs)

    def save(self, out_dir) -> Path:
        """``save_pretrained`` of the model plus the contrastive views and memories, and their
        config (``contrastive_config`` in ``qlearn_config.json``, beside ``qar_config``)."""
        from safetensors.torch import save_file

        extra = None
        if self.contrastive is not None:
            qc = self.contrastive
            extra = {"contrastive_config": {**qc.config.to_dict(), "qc_weight": self.qc_weight},
                     "contrastive_sizes": {"dim": qc.dim, "n_queriers": qc.n_queriers,
                                           "n_clusters": qc.n_clusters}}
        out = self.model.save_pretrained(out_dir, extra_config=extra)
        if self.contrastive is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in self.contrastive.state_dict().items()}
            save_file(state, str(Path(out) / CONTRASTIVE_FILE), metadata={"format": "pt"})
        return Path(out)

    def load(self, folder) -> None:
        """Load what :meth:`save` wrote into this (identically configured) module, in place."""
        from safetensors.torch import load_file

        folder = Path(folder)
        self.model.load_weights(folder)  # either layout (peft + specific, or the old single file)
        if self.contrastive is not None:
            state = load_file(str(folder / CONTRASTIVE_FILE), device=str(self.contrastive.memory.device))
            self.contrastive.load_state_dict(state)


class QARTrainer(Trainer):
    """``compute_loss = L_LM + λ·L_QC``; checkpoints hold the contrastive state too."""

    def __init__(self, *args, cluster_sampler=None, **kwargs):
        super().__init__(*args, **kwargs)
        refuse_sharded(self)
        self.cluster_sampler = cluster_sampler
        self._sums = {"loss_lm": 0.0, "loss_qc": 0.0, "n": 0}
        self._tokens, self._clock = 0, None  # for step_s and tokens_per_s in the log

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self._clock is None:
            self._clock = (time.perf_counter(), self.state.global_step)
        self._tokens += inputs["attention_mask"].sum()  # tokens seen, padding excluded
        out = model(**inputs)
        self._sums["loss_lm"] += out["loss_lm"]
        self._sums["loss_qc"] += out["loss_qc"]
        self._sums["n"] += 1
        return (out["loss"], out) if return_outputs else out["loss"]

    def log(self, logs, start_time=None):
        if "loss" in logs and self._sums["n"]:
            n = self._sums["n"]
            for key in ("loss_lm", "loss_qc"):
                mean = torch.as_tensor(self._sums[key] / n, device=self.args.device).float()
                logs[key] = round(self.accelerator.reduce(mean, "mean").item(), 6)
            self._sums = {"loss_lm": 0.0, "loss_qc": 0.0, "n": 0}
        if "loss" in logs and self._clock is not None and self.state.global_step > self._clock[1]:
            now, (then, step) = time.perf_counter(), self._clock
            tokens = self.accelerator.reduce(torch.as_tensor(self._tokens, device=self.args.device)
                                             .float(), "sum").item()  # all processes
            logs["step_s"] = round((now - then) / (self.state.global_step - step), 3)
            logs["tokens_per_s"] = round(tokens / (now - then), 1)
            self._tokens, self._clock = 0, (now, self.state.global_step)
        super().log(logs, start_time)

    def _get_train_sampler(self, train_dataset=None):
        # trainer_args.train_sampling_strategy=group_by_length (length bucketing: batches of
        # windows of similar token length, less padding): transformers' LengthGroupedSampler
        # with the lengths train() measured (it cannot read them from Window objects itself)
        lengths = getattr(self, "train_lengths", None)
        if self.args.train_sampling_strategy == "group_by_length" and lengths is not None:
            from transformers.trainer_pt_utils import LengthGroupedSampler

            return LengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=lengths)
        return super()._get_train_sampler(train_dataset)

    def get_train_dataloader(self):
        if self.cluster_sampler is None:
            return super().get_train_dataloader()
        from torch.utils.data import DataLoader

        loader = DataLoader(self.train_dataset, batch_sampler=self.cluster_sampler,
                            collate_fn=self.data_collator,
                            num_workers=self.args.dataloader_num_workers)
        return self.accelerator.prepare(loader)

    def _save(self, output_dir=None, state_dict=None):
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        module = self.accelerator.unwrap_model(self.model)
        if state_dict is not None:  # what the Trainer gathered (DeepSpeed): save those values
            load_gathered(module, state_dict)
        module.save(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        self.accelerator.unwrap_model(model or self.model).load(resume_from_checkpoint)


# beside report_to, not instead: metrics.jsonl is what plot_metrics, resume (truncate_metrics)
# and the tests read, whichever trackers a user turns on
class MetricsLogger(TrainerCallback):
    """One JSON object per logging step: step, loss, loss_lm, loss_qc, lr, epoch, grad_norm,
    step_s (seconds per optimizer step since the last log), tokens_per_s (non-padding tokens
    per second, all processes), time."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        row = {"step": state.global_step, "loss": logs.get("loss"), "loss_lm": logs.get("loss_lm"),
               "loss_qc": logs.get("loss_qc"), "lr": logs.get("learning_rate"),
               "epoch": logs.get("epoch"), "grad_norm": logs.get("grad_norm"),
               "step_s": logs.get("step_s"), "tokens_per_s": logs.get("tokens_per_s"),
               "time": round(time.time(), 1)}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


class ProgressSaver(TrainerCallback):
    """Writes PROGRESS_FILE (training seconds so far, collator counts) into each checkpoint;
    ``elapsed()`` gives the seconds. (The collator counts include the batch the data loader has
    fetched ahead: informative only.)"""

    def __init__(self, collator, elapsed):
        self.collator, self.elapsed = collator, elapsed

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            (folder / PROGRESS_FILE).write_text(json.dumps(
                {"train_seconds": round(self.elapsed(), 3), "collator": dict(self.collator.stats)}))


SHARDED = ("qlearn train saves the querier-specific weights and the contrastive memories from "
           "complete parameters; FSDP and DeepSpeed ZeRO-3 shard them. Use DDP (torchrun) or "
           "DeepSpeed ZeRO-2 (configs/ds_zero2.json): the trainable weights are small enough")


def refuse_sharded(trainer) -> None:
    """Refuse FSDP and DeepSpeed ZeRO-3 before any step (a checkpoint would be wrong)."""
    from .errors import ConfigError

    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(plugin, "zero_stage", 0) == 3:
        raise ConfigError(SHARDED)


def load_gathered(module: nn.Module, state_dict: dict) -> None:
    """Copy a state dict the Trainer gathered into ``module`` before saving; refuse one whose
    trainable tensors do not match the parameters (sharded: FSDP or ZeRO-3)."""
    from .errors import CheckpointError

    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    bad = [n for n, p in params.items()
           if n not in state_dict or tuple(state_dict[n].shape) != tuple(p.shape)]
    if bad:
        raise CheckpointError(f"cannot save {bad[0]} from the gathered state dict (missing or "
                              f"sharded): {SHARDED}")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state_dict[n].to(device=p.device, dtype=p.dtype))


def resolve_precision(cfg) -> str:
    """The precision a :class:`~qlearn.train.TrainConfig` trains in (``auto`` resolved here)."""
    if cfg.precision != "auto":
        return cfg.precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def cpu_has_bf16() -> bool:
    """Does this CPU run bf16 matmuls natively (AVX512-BF16 or AMX)? There, bf16 autocast trains
    1.3x faster than fp32 with the same loss curve (docs/speed.md); elsewhere bf16 is emulated and
    slower, so ``precision: auto`` stays fp32."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def training_arguments(cfg, precision: str) -> TrainingArguments:
    """The ``TrainingArguments`` of a :class:`~qlearn.train.TrainConfig` (``trainer_args`` last)."""
    kwargs = dict(
        output_dir=cfg.output_dir, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr, adam_beta1=cfg.adam_betas[0], adam_beta2=cfg.adam_betas[1],
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, warmup_steps=cfg.warmup,
        lr_scheduler_type=cfg.lr_schedule, fp16=precision == "fp16", bf16=precision == "bf16",
        activation_checkpointing=cfg.gradient_checkpointing, logging_steps=cfg.logging_steps,
        save_strategy="epoch" if cfg.save_steps is None else "steps",
        save_total_limit=cfg.save_total_limit, seed=cfg.seed, remove_unused_columns=False,
        report_to="none", dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
        # the memories are identical on every rank (all-gathered writes): no need for DDP to
        # broadcast these large buffers from rank 0 before every forward
        ddp_broadcast_buffers=False,
    )
    if cfg.save_steps is not None:
        kwargs["save_steps"] = cfg.save_steps
    kwargs.update(cfg.trainer_args)
    return TrainingArguments(**kwargs)
