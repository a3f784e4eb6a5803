"""The dual-tower querier-aware model (docs/method.md §4), wrapped around an unmodified transformers LM.

One pretrained decoder runs two streams over the same tokens:

* the **general stream**: the pretrained layers, with LoRA (peft) on q,k,v,o,gate,up,down;
* the **specific stream**: the same embeddings, attention (+ the same LoRA) and norms, but each
  layer's MLP is *replaced* by a new low-rank SwiGLU ``W_down·(SiLU(W_gate·x) ⊙ W_up·x)`` of rank k,
  and a new final norm ``norm_specific`` copied from ``norm``.

Both streams meet before the LM head (``fusion``): ``mean`` (official) =
``(norm(h) + norm_specific(s)) / 2``; ``sum``; ``residual`` (qlearn's) = ``norm(h) + α·norm_specific(s)``
with a learnable α that starts at 0, so that the untrained model *is* the base model.

How, without forking any modeling file (docs/design-notes.md):

1. a forward pre-hook on the decoder stacks the batch twice, ``[x; x]`` (ids, mask, positions), so
   embeddings, rotary, the causal mask and the KV cache all see 2B rows: rows ``:B`` are the general
   stream, rows ``B:`` the specific one;
2. each ``layer.mlp`` becomes a :class:`DualMLP` that sends the first half to the pretrained MLP and
   the second half to the low-rank one;
3. the final ``norm`` becomes a :class:`DualNorm` that normalises each half with its own norm, fuses
   them into B rows, and keeps the specific half (before its norm) for the querier representation.

The causal-LM head, the loss and ``generate()`` are the library's own and see B rows. Supported
decoders: Llama (SmolLM, Llama 2/3), Mistral, Qwen2 (Qwen1.5/2/2.5) and Qwen3. Beam search is not
supported (it reorders the cache by batch index).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")
FUSIONS = ("mean", "sum", "residual")
INITS = ("normal", "zero")
SPECIFIC_MLPS = ("low_rank", "copy_lora", "full_random", "copy_full")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# A saved model folder (save_pretrained), in Hugging Face formats:
#   adapter_config.json + adapter_model.safetensors  peft's LoRA layout (PeftModel.from_pretrained)
#   querier_specific.safetensors                     the weights qlearn adds (specific MLPs, norms)
#   qlearn_config.json                               their config: QARConfig + the base model
#                                                    (+ the contrastive loss's ContrastiveConfig
#                                                    in a training run's folders)
# Folders of older runs hold every trainable weight in one WEIGHTS_FILE; they still load.
WEIGHTS_FILE = "qlearn_model.safetensors"  # the old single-file layout (read only)
SPECIFIC_FILE = "querier_specific.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"  # peft's SAFETENSORS_WEIGHTS_NAME
ADAPTER_CONFIG = "adapter_config.json"  # peft's CONFIG_NAME
CONFIG_FILE = "qlearn_config.json"
WEIGHT_FILES = (WEIGHTS_FILE, ADAPTER_FILE, SPECIFIC_FILE)


@dataclass
class QARConfig:
    """Everything that defines a querier-aware model (the ``model:`` block of a recipe); the
    contrastive loss's settings are :class:`qlearn.contrastive.ContrastiveConfig` (``contrastive:``).

    rank: rank k of the specific low-rank MLPs (``specific_mlp="low_rank"``). ``None`` with no
        ``specific_mlp`` keeps its old meaning, ``"copy_full"``.
    specific_mlp: what each layer's specific MLP is (``SPECIFIC_MLPS``; default from ``rank``):
        ``"low_rank"`` — the method: a new SwiGLU of width ``rank``, random init (``specific_init``);
        ``"copy_lora"`` — the official "w/o low-rank": a frozen copy of the pretrained MLP with
        LoRA (``lora_r``, or 16 when that is 0; ``lora_alpha``, ``lora_dropout``) on its three
        matrices, so it starts as the pretrained MLP; ``"full_random"`` — the control that
        changes only the width: a new SwiGLU of the pretrained ``intermediate_size`` with the
        low-rank one's random init; ``"copy_full"`` — a copy of the pretrained MLP trained in
        full (qlearn's old "w/o low-rank"; ~5.6 B trainable parameters at Llama-3-8B size).
    lora_r, lora_alpha, lora_dropout, lora_targets: peft LoRA on the shared attention and the general
        MLP. ``lora_r=0`` (or no targets) means no LoRA.
    fusion: "mean" (official), "sum", or "residual" (norm(h) + α·norm_specific(s), α starts at 0).
    specific_init: "normal" (N(0, initializer_range) for all three matrices, as official) or "zero"
        (W_down = 0, so the specific MLPs start as the identity residual).
    specific: False gives the plain LoRA model (the FT baseline) through the same class.
    layers: indices of the decoder layers whose MLP the specific stream replaces; None = all. In the
        other layers both streams share the pretrained MLP (+LoRA).
    """
    rank: int | None = 64
    lora_r: int = 16
    lora_alpha: int = 8
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LORA_TARGETS
    fusion: str = "mean"
    specific_init: str = "normal"
    specific: bool = True
    layers: tuple[int, ...] | None = None
    specific_mlp: str | None = None

    def __post_init__(self):
        self.lora_targets = tuple(self.lora_targets)
        if self.layers is not None:
            self.layers = tuple(int(i) for i in self.layers)
        if self.specific_mlp is None:  # backward compatible: rank=None was the full-training copy
            self.specific_mlp = "copy_full" if self.rank is None else "low_rank"
        if self.specific_mlp not in SPECIFIC_MLPS:
            raise ValueError(f"QARConfig.specific_mlp={self.specific_mlp!r}: use one of "
                             f"{SPECIFIC_MLPS}")
        if self.specific_mlp == "low_rank" and self.rank is None:
            raise ValueError("QARConfig.specific_mlp='low_rank' needs a rank (e.g. model.rank=64)")
        if self.fusion not in FUSIONS:
            raise ValueError(f"QARConfig.fusion={self.fusion!r}: use one of {FUSIONS}")
        if self.specific_init not in INITS:
            raise ValueError(f"QARConfig.specific_init={self.specific_init!r}: use one of {INITS}")
        if self.rank is not None and (not isinstance(self.rank, int) or self.rank < 1):
            raise ValueError(f"QARConfig.rank={self.rank!r}: use a positive int, or None for a "
                             "full-size specific MLP")
        if self.lora_r < 0:
            raise ValueError(f"QARConfig.lora_r={self.lora_r}: use 0 (no LoRA) or a positive int")
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Ranges of the LoRA settings (types are checked by :func:`qlearn.config.build`)."""
        from .errors import ConfigError

        rules = [("lora_dropout", 0 <= self.lora_dropout < 1, "in [0, 1)"),
                 ("lora_alpha", self.lora_alpha > 0, "> 0")]
        for name, ok, rule in rules:
            if not ok:
                raise ConfigError(f"QARConfig.{name}={getattr(self, name)!r}: must be {rule}; "
                                  f"set model.{name} in the recipe or with --set model.{name}=...")

    @property
    def use_lora(self) -> bool:
        return self.lora_r > 0 and len(self.lora_targets) > 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "QARConfig") -> "QARConfig":
        """Checked like every recipe block (:func:`qlearn.config.build`): unknown keys, types,
        ranges. A contrastive key (``view_dim``, ``qc_weight``, ...) is refused naming its new
        place; :func:`split_legacy` separates those of a config written before the split."""
        from .config import build

        refuse_contrastive_keys(d, where)
        return build(cls, d, where, prefix="model.")


def refuse_contrastive_keys(model, where: str) -> None:
    """A ``model:`` mapping that holds a contrastive key (the layout before ContrastiveConfig)
    raises one :class:`~qlearn.errors.ConfigError` naming the key, ``where`` and the move."""
    from .contrastive import CONTRASTIVE_FIELDS
    from .errors import ConfigError

    moved = [k for k in model if k in CONTRASTIVE_FIELDS] if isinstance(model, dict) else []
    if moved:
        raise ConfigError(f"{where}: model.{moved[0]} is a setting of the contrastive loss, not of "
                          f"the model: move model.{moved[0]} to contrastive.{moved[0]}"
                          + (f" (and {', '.join('model.' + k for k in moved[1:])} likewise)"
                             if moved[1:] else "") + " (a contrastive: block beside model:)")


def split_legacy(model: dict) -> tuple[dict, dict]:
    """``(model, contrastive)``: a ``model``/``qar_config`` mapping written by qlearn before the
    contrastive settings had their own block, split into the model's keys and the loss's."""
    from .contrastive import CONTRASTIVE_FIELDS

    model = dict(model or {})
    return model, {k: model.pop(k) for k in CONTRASTIVE_FIELDS if k in model}


def has_weights(folder) -> bool:
    """Does ``folder`` hold saved weights (either layout)?"""
    return any((Path(folder) / name).exists() for name in WEIGHT_FILES)


def model_folder(repo_id_or_path, revision: str | None = None) -> Path:
    """A local folder for ``repo_id_or_path``: the folder itself, or the hub repo's snapshot
    (``huggingface_hub.snapshot_download``; from the local cache when ``HF_HUB_OFFLINE=1``)."""
    from .errors import ModelNotFoundError

    path = Path(repo_id_or_path)
    if path.exists() or str(repo_id_or_path).count("/") != 1 or str(repo_id_or_path).startswith(
            (".", "/", "~")):
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(repo_id_or_path), revision=revision))
    except Exception as e:  # offline and not cached, no such repo, no access
        raise ModelNotFoundError(f"{repo_id_or_path}: neither a folder nor a hub repo that can be "
                                 f"fetched ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
                                 ) from e


def read_adapter_config(path) -> dict:
    """The ``qlearn_config.json`` of a :meth:`QuerierAwareLM.save_pretrained` folder, checked:
    ``{"base": {...}, "qar_config": {...}, "qar": QARConfig}`` plus, in a training run's folders,
    ``"contrastive_config"`` (the loss's :class:`~qlearn.contrastive.ContrastiveConfig`). A folder
    written before the split keeps the contrastive keys inside ``qar_config``: they are split off
    into ``contrastive_config`` (the model ignores them). A missing, unreadable or incomplete
    folder raises :class:`~qlearn.errors.ModelLoadError` naming the file and fix."""
    from .errors import ModelLoadError, ModelNotFoundError

    path = Path(path)
    if not path.is_dir():
        raise ModelNotFoundError(f"{path}: no such model folder (it needs {CONFIG_FILE} and "
                                 f"{ADAPTER_FILE} or {SPECIFIC_FILE}); give a `qlearn train` run folder, its final/ "
                                 "or a checkpoint-N/")
    if not (path / CONFIG_FILE).exists() or not has_weights(path):
        raise ModelNotFoundError(f"{path} is not a qlearn model folder: it needs {CONFIG_FILE} and "
                             f"{ADAPTER_FILE} or {SPECIFIC_FILE} (written by "
                             "QuerierAwareLM.save_pretrained, e.g. <run>/final/)")
    try:
        meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        where = f", line {e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        raise ModelLoadError(f"{path / CONFIG_FILE}{where}: not valid JSON ({e}); the folder is "
                             "damaged: copy it again or retrain") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("base"), dict) or not isinstance(
            meta.get("qar_config"), dict):
        raise ModelLoadError(f"{path / CONFIG_FILE}: lacks the 'base' and 'qar_config' objects "
                             "that save_pretrained writes; not a qlearn model config")
    qar, legacy = split_legacy(meta["qar_config"])
    if legacy:  # written by qlearn before ContrastiveConfig: the loss's keys were the model's
        meta["qar_config"] = qar
        meta["contrastive_config"] = {**legacy, **(meta.get("contrastive_config") or {})}
    try:
        meta["qar"] = QARConfig.from_dict(qar)
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{path / CONFIG_FILE}: bad qar_config ({e})") from e
    return meta


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    from .errors import ModelLoadError

    try:
        return load_file(str(path))
    except Exception as e:  # random bytes, a truncated file: safetensors' own errors
        raise ModelLoadError(f"{path}: not a readable safetensors file "
                             f"({type(e).__name__}: {' '.join(str(e).split())}); it is "
                             "truncated or corrupt: copy it again or retrain") from e


@dataclass
class QAROutput(ModelOutput):
    """``loss`` (shifted CE, -100 ignored; when labels are given), ``logits`` [B, T, V],
    ``querier_repr`` [B, d] (when a responder mask is given and the specific stream is on)."""
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    querier_repr: torch.Tensor | None = None


class SwiGLU(nn.Module):
    """``w_down(act(w_gate x) * w_up x)`` of width k. The names ``w_*`` keep peft's LoRA off it.

    Weights may be kept in fp32 under a half-precision base (like peft's adapters): inputs are cast
    to the weights' dtype and the output back.
    """

    def __init__(self, d: int, k: int, act: str = "silu", bias: bool = False, dtype=None, device=None):
        super().__init__()
        kw = dict(bias=bias, dtype=dtype, device=device)
        self.w_gate, self.w_up = nn.Linear(d, k, **kw), nn.Linear(d, k, **kw)
        self.w_down = nn.Linear(k, d, **kw)
        self.act = ACT2FN[act]

    def forward(self, x):
        y = x.to(self.w_gate.weight.dtype)
        return self.w_down(self.act(self.w_gate(y)) * self.w_up(y)).to(x.dtype)


class LoRASwiGLU(nn.Module):
    """A frozen copy of a pretrained SwiGLU MLP with LoRA on its three matrices (``copy_lora``).

    ``W x + (α/r)·B A dropout(x)`` per matrix, A Kaiming-uniform and B zero as in peft, so it starts
    exactly as the pretrained MLP. The copy keeps the base model's dtype; A and B use ``dtype``.
    Names ``w_*``/``adapt_*`` keep peft's own LoRA (which targets ``*_proj``) off it.
    """

    def __init__(self, mlp: nn.Module, act: str, r: int, alpha: float, dropout: float, dtype=None):
        super().__init__()
        self.w_gate, self.w_up, self.w_down = (copy.deepcopy(mlp.gate_proj), copy.deepcopy(mlp.up_proj),
                                               copy.deepcopy(mlp.down_proj))
        self.requires_grad_(False)
        self.act, self.scale, self.drop = ACT2FN[act], alpha / r, nn.Dropout(dropout)
        dev = self.w_down.weight.device
        self.adapt_a = nn.ParameterDict()
        self.adapt_b = nn.ParameterDict()
        for name in ("gate", "up", "down"):
            lin = getattr(self, f"w_{name}")
            a = torch.empty(r, lin.in_features, dtype=dtype, device=dev)
            nn.init.kaiming_uniform_(a, a=5 ** 0.5)
            self.adapt_a[name] = nn.Parameter(a)
            self.adapt_b[name] = nn.Parameter(torch.zeros(lin.out_features, r, dtype=dtype, device=dev))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.adapt_a.values(), *self.adapt_b.values()]

    def _lin(self, name: str, x):
        base = getattr(self, f"w_{name}")
        a, b = self.adapt_a[name], self.adapt_b[name]
        delta = (self.drop(x.to(a.dtype)) @ a.T) @ b.T * self.scale
        return base(x.to(base.weight.dtype)).to(a.dtype) + delta

    def forward(self, x):
        h = self.act(self._lin("gate", x)) * self._lin("up", x)
        return self._lin("down", h).to(x.dtype)


class Streams:
    """State shared by the hook and the wrapper modules: is the specific stream on?"""

    def __init__(self):
        self.enabled = True


class DualMLP(nn.Module):
    """First half of the batch -> the pretrained MLP, second half -> the specific MLP."""

    def __init__(self, general: nn.Module, specific: nn.Module, streams: Streams):
        super().__init__()
        self.general, self.specific, self.streams = general, specific, streams

    def forward(self, x):
        if not self.streams.enabled:
            return self.general(x)
        # chunk (one split node) rather than x[:b], x[b:]: the backward of two slices builds two
        # zero-filled full-size gradients and adds them; a split's backward is one concatenation
        g, s = x.chunk(2)
        return torch.cat([self.general(g), self.specific(s)])


class DualNorm(nn.Module):
    """The final norm: normalise each half with its own norm and fuse them into B rows.

    ``specific`` is ``norm_specific``; ``alpha`` exists for the residual fusion. The specific half
    before its norm is kept in ``stash`` for the querier representation (read and cleared by the
    wrapper's forward).
    """

    def __init__(self, general: nn.Module, fusion: str, streams: Streams, dtype):
        super().__init__()
        self.general, self.fusion, self.streams = general, fusion, streams
        self.specific = copy.deepcopy(general).to(dtype)
        self.alpha = nn.Parameter(torch.zeros((), dtype=dtype, device=general.weight.device)) \
            if fusion == "residual" else None
        self.stash = None

    def forward(self, h):
        if not self.streams.enabled:
            return self.general(h)
        g, s = h.chunk(2)  # views, one split node in the graph (see DualMLP)
        self.stash = s
        g = self.general(g)
        s = self.specific(s).to(g.dtype)
        if self.fusion == "mean":
            return 0.5 * (g + s)
        if self.fusion == "sum":
            return g + s
        return g + self.alpha.to(g.dtype) * s


def _check_supported(hf_model):
    model_type = getattr(hf_model.config, "model_type", None)
    if model_type not in SUPPORTED:
        raise ValueError(
            f"QuerierAwareLM supports the decoders {SUPPORTED} (Llama/SmolLM, Mistral, Qwen1.5-2.5, "
            f"Qwen3); got model_type={model_type!r} ({type(hf_model).__name__}). Pick a supported "
            "model, e.g. --model smollm2-135m or Qwen/Qwen2.5-0.5B-Instruct.")
    decoder = hf_model.get_decoder()
    if not hasattr(decoder, "layers") or not hasattr(decoder, "norm"):
        raise ValueError(f"{type(decoder).__name__} has no .layers/.norm: not a supported layout")
    return decoder


def _double_batch_hook(streams: Streams, names: list[str]):
    """A decoder pre-hook that turns every batch-B input into the stacked [x; x] of batch 2B."""

    def hook(module, args, kwargs):
        if not streams.enabled:
            return None
        kwargs = {**dict(zip(names, args)), **kwargs}
        first = kwargs.get("input_ids")
        first = first if first is not None else kwargs.get("inputs_embeds")
        b = first.shape[0]
        for key in ("input_ids", "inputs_embeds", "attention_mask", "position_ids"):
            t = kwargs.get(key)
            if t is None:
                continue
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"QuerierAwareLM: {key} of type {type(t).__name__} is not supported "
                                "(use a 2D or 4D tensor attention mask, e.g. sdpa or eager attention)")
            if t.shape[0] == b:
                kwargs[key] = torch.cat([t, t])
        return (), kwargs

    return hook


def _trainable_dtype(hf_model) -> torch.dtype:
    """New weights train in fp32 under a half-precision base (as peft does for its adapters)."""
    dtype = hf_model.get_input_embeddings().weight.dtype
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class QuerierAwareLM(nn.Module):
    """A transformers causal LM with a querier-specific stream; see the module docstring.

    Build with :meth:`from_base` (which edits ``base_model`` in place, like peft's
    ``get_peft_model``: pass ``copy.deepcopy(model)`` to keep the original). Attributes:
    ``config`` (the :class:`QARConfig`), ``base`` (the peft model, or the transformers model when
    there is no LoRA), ``hf`` (the transformers model inside), ``norm_role_proj`` (the querier norm).
    """

    def __init__(self, base_model, config: QARConfig | None = None):
        super().__init__()
        cfg = config or QARConfig()
        decoder = _check_supported(base_model)
        self.config = cfg
        self.streams = Streams()
        self.norm_role_proj = None
        dtype, hf_cfg = _trainable_dtype(base_model), base_model.config
        if cfg.specific:
            n_layers = len(decoder.layers)
            layers = range(n_layers) if cfg.layers is None else cfg.layers
            bad = [i for i in layers if not 0 <= i < n_layers]
            if bad:
                raise ValueError(f"QARConfig.layers has {bad}: the model has layers 0..{n_layers - 1}")
            for i in layers:
                mlp = decoder.layers[i].mlp
                decoder.layers[i].mlp = DualMLP(mlp, self._specific_mlp(mlp, hf_cfg, dtype), self.streams)
            decoder.norm = DualNorm(decoder.norm, cfg.fusion, self.streams, dtype)
            self.norm_role_proj = copy.deepcopy(decoder.norm.general).to(dtype)
            names = list(inspect.signature(decoder.forward).parameters)
            self._hook = decoder.register_forward_pre_hook(_double_batch_hook(self.streams, names),
                                                           with_kwargs=True)
        if cfg.use_lora:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=list(cfg.lora_targets), bias="none", task_type="CAUSAL_LM")
            with warnings.catch_warnings():  # peft asks the deprecated is_gradient_checkpointing
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
                self.base = get_peft_model(base_model, lora)  # freezes all but LoRA
        else:
            self.base = base_model.requires_grad_(False)
        for p in self._new_parameters():
            p.requires_grad_(True)

    def _specific_mlp(self, mlp: nn.Module, hf_cfg, dtype) -> nn.Module:
        """The specific MLP of one layer, of the kind ``QARConfig.specific_mlp`` names."""
        d, act = hf_cfg.hidden_size, hf_cfg.hidden_act
        device = mlp.down_proj.weight.device
        kind = self.config.specific_mlp
        if kind == "copy_lora":  # the official full-parameter variant: pretrained copy + LoRA
            cfg = self.config
            r = cfg.lora_r if cfg.lora_r > 0 else 16
            return LoRASwiGLU(mlp, act, r, cfg.lora_alpha, cfg.lora_dropout, dtype)
        if kind == "copy_full":  # full size, copied from the pretrained MLP, trained in full
            bias = mlp.down_proj.bias is not None
            new = SwiGLU(d, mlp.down_proj.in_features, act, bias, dtype, device)
            with torch.no_grad():
                for mine, theirs in [(new.w_gate, mlp.gate_proj), (new.w_up, mlp.up_proj),
                                     (new.w_down, mlp.down_proj)]:
                    mine.weight.copy_(theirs.weight)
                    if bias:
                        mine.bias.copy_(theirs.bias)
            return new
        width = mlp.down_proj.in_features if kind == "full_random" else self.config.rank
        new = SwiGLU(d, width, act, False, dtype, device)  # low_rank / full_random: same init
        std = getattr(hf_cfg, "initializer_range", 0.02)
        with torch.no_grad():
            for lin in (new.w_gate, new.w_up, new.w_down):
                nn.init.normal_(lin.weight, std=std)
            if self.config.specific_init == "zero":
                new.w_down.weight.zero_()
        return new

    def _new_parameters(self) -> list[nn.Parameter]:
        """The weights qlearn adds: specific MLPs, norm_specific, norm_role_proj (and α)."""
        if not self.config.specific:
            return []
        decoder = self.hf.get_decoder()
        modules = [layer.mlp.specific for layer in decoder.layers if isinstance(layer.mlp, DualMLP)]
        modules += [decoder.norm.specific, self.norm_role_proj]
        alpha = [decoder.norm.alpha] if decoder.norm.alpha is not None else []
        return [p for m in modules for p in  # copy_lora: only its LoRA, the copy stays frozen
                (m.trainable_parameters() if hasattr(m, "trainable_parameters") else m.parameters())
                ] + alpha

    # ---- construction, saving, loading -------------------------------------------------------
    @classmethod
    def from_base(cls, base_model, config: QARConfig | None = None) -> "QuerierAwareLM":
        return cls(base_model, config)

    def _split_trainable(self) -> tuple[dict, dict]:
        """``(lora, specific)``: the trainable parameters peft owns, and those qlearn adds."""
        lora, specific = {}, {}
        for n, p in self.named_parameters():
            if p.requires_grad:
                (lora if ".lora_" in n else specific)[n] = p
        return lora, specific

    def _adapter_keys(self, adapter: dict, to_plain: bool) -> dict:
        """peft's adapter keys with ``<layer>.mlp.general.`` written as ``<layer>.mlp.`` (to_plain)
        or back: the saved LoRA is then the general tower's, loadable onto the plain base model."""
        duals = [n for n, m in self.base.named_modules() if isinstance(m, DualMLP)]
        out = {}
        for key, value in adapter.items():
            for d in duals:
                if to_plain and key.startswith(f"{d}.general."):
                    key = f"{d}." + key[len(d) + len(".general."):]
                    break
                if not to_plain and key.startswith(f"{d}.") and not key.startswith(f"{d}.general."):
                    key = f"{d}.general." + key[len(d) + 1:]
                    break
            out[key] = value
        return out

    def save_pretrained(self, out_dir, model_card: str | None = None,
                        extra_config: dict | None = None) -> Path:
        """Write the LoRA in peft's layout (``PeftModel.from_pretrained(base, out_dir)`` loads it),
        the querier-specific weights beside it (``querier_specific.safetensors``) and their config
        (``qlearn_config.json``, written last, with ``extra_config``'s entries beside
        ``qar_config``, e.g. the trainer's ``contrastive_config``); ``model_card`` becomes
        ``README.md``."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        lora, specific = self._split_trainable()
        for name in WEIGHT_FILES:  # nothing stale from an earlier save (or the old layout)
            (out / name).unlink(missing_ok=True)
        had_card = (out / "README.md").exists()
        if self.config.use_lora:
            with warnings.catch_warnings():  # peft may not find the base's config offline
                warnings.simplefilter("ignore")
                self.base.save_pretrained(str(out), safe_serialization=True)
            if self.config.specific:  # the general stream's LoRA under the plain model's names
                from safetensors.torch import load_file

                adapter = self._adapter_keys(load_file(str(out / ADAPTER_FILE)), to_plain=True)
                save_file(adapter, str(out / ADAPTER_FILE), metadata={"format": "pt"})
            if not had_card and model_card is None:  # peft's placeholder card: qlearn writes its own
                (out / "README.md").unlink(missing_ok=True)
        if specific:
            save_file({n: p.detach().to("cpu").contiguous() for n, p in specific.items()},
                      str(out / SPECIFIC_FILE), metadata={"format": "pt"})
        if model_card is not None:  # peft writes a stub README.md; ours replaces it
            (out / "README.md").write_text(model_card, encoding="utf-8")
        hf_cfg = self.hf.config
        meta = {"format": "peft+specific", "qar_config": self.config.to_dict(),
                "base": {k: getattr(hf_cfg, k, None) for k in
                         ("model_type", "name_or_path", "hidden_size", "num_hidden_layers",
                          "vocab_size")}}
        meta["base"]["name_or_path"] = getattr(hf_cfg, "_name_or_path", None)
        meta.update({k: v for k, v in (extra_config or {}).items() if k not in meta})
        (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        return out

    def push_to_hub(self, repo_id: str, model_card: str | None = None, private: bool = True,
                    token: str | None = None, extra_files=()) -> str:
        """``save_pretrained`` into a temporary folder (plus ``extra_files``, e.g. the run's
        train_config.yaml) and upload it to the hub repo ``repo_id``; returns the commit URL."""
        import shutil
        import tempfile

        from huggingface_hub import HfApi

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, model_card=model_card)
            for f in extra_files:
                shutil.copy(f, tmp)
            api = HfApi(token=token)
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp,
                                     commit_message="qlearn: upload a querier-aware model")
        return str(getattr(info, "commit_url", info))

    @classmethod
    def from_pretrained(cls, base_model, path, revision: str | None = None) -> "QuerierAwareLM":
        """Rebuild the model from a fresh base model and a :meth:`save_pretrained` folder or a hub
        repo id (either layout: peft + specific, or the old single ``qlearn_model.safetensors``)."""
        from .errors import ModelLoadError

        path = model_folder(path, revision)
        meta = read_adapter_config(path)
        for key in ("model_type", "hidden_size", "num_hidden_layers"):
            saved, given = meta["base"].get(key), getattr(base_model.config, key, None)
            if saved != given:
                raise ModelLoadError(f"{path} was trained on a base model with {key}={saved} "
                                     f"({meta['base'].get('name_or_path')}); this one has {given}. "
                                     "Load the same base model it was trained on (--model).")
        model = cls(base_model, meta["qar"])
        model.load_weights(path)
        return model

    def load_weights(self, path) -> None:
        """Copy the weights of a saved folder (either layout) into this identically configured
        model, in place; mismatches raise :class:`~qlearn.errors.ModelLoadError`."""
        from .errors import ModelLoadError

        path = Path(path)
        lora, specific = self._split_trainable()
        tensors = {}
        if (path / WEIGHTS_FILE).exists():  # the old layout: every trainable weight, our names
            tensors = _read_safetensors(path / WEIGHTS_FILE)
            where = path / WEIGHTS_FILE
        else:
            where = path
            if lora:
                from peft.utils import set_peft_model_state_dict

                if not (path / ADAPTER_FILE).exists():
                    raise ModelLoadError(f"{path} lacks {ADAPTER_FILE}: its config has LoRA "
                                         f"(lora_r={self.config.lora_r}); copy the folder again")
                adapter = self._adapter_keys(_read_safetensors(path / ADAPTER_FILE), to_plain=False)
                result = set_peft_model_state_dict(self.base, adapter)
                bad = list(getattr(result, "unexpected_keys", []) or [])
                bad += [k for k in getattr(result, "missing_keys", []) or [] if ".lora_" in k]
                if bad:
                    raise ModelLoadError(f"{path / ADAPTER_FILE} does not match the model built "
                                         f"from its config: unexpected or missing {bad[:5]}")
            if specific:
                if not (path / SPECIFIC_FILE).exists():
                    raise ModelLoadError(f"{path} lacks {SPECIFIC_FILE}: its config has a "
                                         "querier-specific stream; copy the folder again")
                tensors = _read_safetensors(path / SPECIFIC_FILE)
            lora = {}  # loaded by peft
        params = {**lora, **specific}
        missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
        if missing or unexpected:
            raise ModelLoadError(f"{where} does not match the model built from its "
                                 f"config: missing {missing[:5]}, unexpected {unexpected[:5]}")
        bad = [n for n, p in params.items() if tuple(tensors[n].shape) != tuple(p.shape)]
        if bad:
            raise ModelLoadError(f"{where}: {bad[0]} has shape "
                                 f"{tuple(tensors[bad[0]].shape)}, the model expects "
                                 f"{tuple(params[bad[0]].shape)}; the weights and "
                                 f"{CONFIG_FILE} come from different runs")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(tensors[name])

    # ---- running -----------------------------------------------------------------------------
    _PASSED = ("position_ids", "inputs_embeds", "use_cache", "cache", "past_key_values",
               "logits_to_keep", "num_items_in_batch")

    def forward(self, input_ids=None, attention_mask=None, labels=None, responder_mask=None,
                **kwargs) -> QAROutput:
        """Logits (and the loss with labels). With ``responder_mask`` [B, T] (1 on responder
        tokens) also ``querier_repr``: the specific stream's last-layer states, normalised by
        ``norm_role_proj`` and averaged over those tokens. Other keys (querier, cluster, ...) are
        ignored here; the trainer uses them."""
        passed = {k: v for k, v in kwargs.items() if k in self._PASSED}
        out = self.base(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **passed)
        stash = self._pop_stash()
        z = None
        if responder_mask is not None and stash is not None:
            z = self.pool(stash, responder_mask)
        return QAROutput(loss=out.loss, logits=out.logits, querier_repr=z)

    def pool(self, hidden: torch.Tensor, responder_mask: torch.Tensor) -> torch.Tensor:
        """``norm_role_proj`` on each token, then the mean over the masked tokens (0 if none)."""
        h = self.norm_role_proj(hidden)
        m = responder_mask.to(h.dtype).unsqueeze(-1)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def _pop_stash(self):
        if not self.config.specific:
            return None
        norm = self.hf.get_decoder().norm
        stash, norm.stash = norm.stash, None
        return stash

    @torch.no_grad()
    def generate(self, *args, **kwargs):
        """transformers' ``generate`` on the fused model (both streams' KV caches, 2B rows)."""
        beams = kwargs.get("num_beams") or getattr(kwargs.get("generation_config"), "num_beams", 1)
        if self.config.specific and (beams or 1) > 1:
            raise NotImplementedError("beam search reorders the KV cache by batch index, which the "
                                      "stacked dual-stream batch does not support; use greedy or "
                                      "sampling (num_beams=1)")
        out = self.base.generate(*args, **kwargs)
        self._pop_stash()
        return out

    @contextlib.contextmanager
    def general_only(self):
        """Run only the general stream (the LoRA model) inside the block."""
        before, self.streams.enabled = self.streams.enabled, False
        try:
            yield self
        finally:
            self.streams.enabled = before

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, **kwargs):
        self.hf.activation_checkpointing_enable(activation_checkpointing_kwargs, **kwargs)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None, **kwargs):
        self.hf.activation_checkpointing_enable(gradient_checkpointing_kwargs, **kwargs)

    def gradient_checkpointing_disable(self):
        self.hf.activation_checkpointing_disable()

    @property
    def hf(self):
        """The transformers model inside (edited in place: DualMLP, DualNorm, LoRA layers)."""
        return self.base.get_base_model() if hasattr(self.base, "get_base_model") else self.base

    @property
    def device(self) -> torch.device:
        return self.hf.device

    @property
    def dtype(self) -> torch.dtype:
        return self.hf.dtype

    @property
    def generation_config(self):
        return self.hf.generation_config


# ---- parameter report ----------------------------------------------------------------------------
def _component(name: str) -> str:
    if "lora_" in name:
        return "LoRA (attention)" if "self_attn" in name else "LoRA (MLP)"
    if ".mlp.specific." in name:
        return "specific MLPs"
    if "norm.specific." in name:
        return "norm_specific"
    if name.startswith("norm_role_proj"):
        return "norm_role_proj"
    if name.endswith("norm.alpha"):
        return "fusion alpha"
    if "embed_tokens" in name:
        return "embeddings"
    if "lm_head" in name:
        return "LM head"
    if "self_attn" in name:
        return "attention (pretrained)"
    if ".mlp." in name:
        return "MLP (pretrained)"
    return "norms (pretrained)" if "norm" in name else "other"


def parameter_report(model: nn.Module, **extra: nn.Module):
    """Trainable vs frozen parameters per component, with memory estimates (a pandas DataFrame).

    Works for a :class:`QuerierAwareLM` or any torch model (components are recognised by name);
    ``extra`` modules (e.g. ``heads=loss_fn``) get one row each, their buffers counted as frozen.
    ``weights MiB`` is the size of the parameters in their dtype; ``training MiB`` adds, for the
    trainable ones, a gradient in the same dtype and AdamW's two fp32 moments (activations are not
    included: the benchmark measures them). Tied weights are counted once.
    """
    import pandas as pd

    rows: dict[str, dict] = {}

    def add(component, n, trainable, nbytes):
        r = rows.setdefault(component, {"trainable": 0, "frozen": 0, "weights MiB": 0.0,
                                        "training MiB": 0.0})
        r["trainable" if trainable else "frozen"] += n
        r["weights MiB"] += n * nbytes / 2**20
        r["training MiB"] += n * (2 * nbytes + 8 if trainable else nbytes) / 2**20

    for name, p in model.named_parameters():
        add(_component(name), p.numel(), p.requires_grad, p.element_size())
    for key, module in extra.items():
        for p in module.parameters():
            add(key, p.numel(), p.requires_grad, p.element_size())
        for b in module.buffers():
            add(key, b.numel(), False, b.element_size())
    order = ["embeddings", "attention (pretrained)", "MLP (pretrained)", "norms (pretrained)",
             "LM head", "LoRA (attention)", "LoRA (MLP)", "specific MLPs", "norm_specific",
             "norm_role_proj", "fusion alpha", "other"]
    rows = {k: rows[k] for k in [*order, *extra] if k in rows}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.loc["total"] = df.sum()
    df[["trainable", "frozen"]] = df[["trainable", "frozen"]].astype(int)
    df["trainable %"] = 100 * df["trainable"] / (df["trainable"] + df["frozen"])
    return df.round(2)
