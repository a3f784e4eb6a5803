"""Hugging Face formats: a run folder in peft's layout (the FT baseline loads with
``PeftModel.from_pretrained``), the querier-specific weights beside it, the old single-file
layout still loading, the model card, hub-id loading through huggingface_hub's own cache
resolution (offline, from a local snapshot), and checkpoints refused under sharded states."""
import copy
import json

import pytest
import torch

from qlearn.assets import tiny_lm
from qlearn.contrastive import ContrastiveConfig
from qlearn.model import (ADAPTER_CONFIG, ADAPTER_FILE, CONFIG_FILE, SPECIFIC_FILE, WEIGHTS_FILE,
                          QARConfig, QuerierAwareLM)
from qlearn.runs import load_trained, stage_run
from qlearn.train import TrainConfig, train
from qlearn.trainer import load_gathered


def _recipe(out, **model):
    return TrainConfig(source="synthetic", responder=None, n_clusters=1, base_model="tiny",
                       model=QARConfig(**{"rank": 4, "lora_r": 4, **model}),
                       contrastive=ContrastiveConfig(view_dim=16, memory_size=8, qc_weight=0.25),
                       output_dir=str(out), max_steps=3, batch_size=4, grad_accum=1,
                       logging_steps=1, save_steps=1000, lr=1e-2, warmup=0, precision="fp32",
                       gradient_checkpointing=False, probe_windows=0, max_length=64, seed=3)


def _logits(model, tok):
    batch = tok(["Mom: are you coming on Sunday?\nSam:"], return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.fixture(scope="module")
def ft_run(tmp_path_factory):
    return train(_recipe(tmp_path_factory.mktemp("ft") / "run", specific=False))


@pytest.fixture(scope="module")
def dual_run(tmp_path_factory):
    return train(_recipe(tmp_path_factory.mktemp("dual") / "run"))


def test_the_ft_run_loads_with_peft(ft_run):
    from peft import PeftModel

    final = ft_run / "final"
    assert {ADAPTER_CONFIG, ADAPTER_FILE, CONFIG_FILE, "README.md"} <= {p.name for p in final.iterdir()}
    assert not (final / SPECIFIC_FILE).exists() and not (final / WEIGHTS_FILE).exists()
    ours, tok = load_trained(ft_run)
    base, _ = tiny_lm(seed=3)
    peft_model = PeftModel.from_pretrained(base, str(final)).eval()
    assert torch.allclose(_logits(peft_model, tok), _logits(ours, tok), atol=1e-6)
    assert not torch.allclose(_logits(tiny_lm(seed=3)[0], tok), _logits(ours, tok), atol=1e-4)


def test_every_run_has_a_model_card(ft_run, dual_run):
    for run, kind in ((ft_run, "plain LoRA fine-tuning"), (dual_run, "dual tower")):
        card = (run / "README.md").read_text(encoding="utf-8")
        assert card == (run / "final" / "README.md").read_text(encoding="utf-8")
        assert card.startswith("---\nlibrary_name: peft") and kind in card
        assert "tiny_lm" in card and "synthetic" in card and "max_steps 3" in card
        last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        assert f"Last logged step {last['step']}: loss {last['loss']}" in card


def test_dual_tower_files_and_round_trip(dual_run, tmp_path):
    final = dual_run / "final"
    assert {ADAPTER_FILE, SPECIFIC_FILE, CONFIG_FILE} <= {p.name for p in final.iterdir()}
    model, tok = load_trained(dual_run)
    again = QuerierAwareLM.from_pretrained(tiny_lm(seed=3)[0], final).eval()
    assert torch.equal(_logits(model, tok), _logits(again, tok))
    # the adapter is the general tower's LoRA under the plain model's names: peft loads all of it
    # onto the plain base, and that is the dual model with its specific stream switched off
    import warnings

    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*missing adapter keys")
        general = PeftModel.from_pretrained(tiny_lm(seed=3)[0], str(final)).eval()
    with model.general_only():
        alone = _logits(model, tok)
    assert torch.allclose(_logits(general, tok), alone, atol=1e-6)
    assert not torch.allclose(alone, _logits(model, tok), atol=1e-5)  # the specific stream counts


def test_run_folders_describe_each_owner_and_old_folders_still_load(dual_run, tmp_path):
    """qlearn_config.json holds the model's QARConfig and, beside it, the loss's
    ContrastiveConfig; a run folder written before the split (the loss's keys inside qar_config
    and under model: in train_config.yaml) loads the same model."""
    import dataclasses
    import shutil

    import yaml

    from qlearn.card import model_card
    from qlearn.model import read_adapter_config

    meta = json.loads((dual_run / "final" / CONFIG_FILE).read_text())
    assert set(meta["qar_config"]) == {f.name for f in dataclasses.fields(QARConfig)}
    assert meta["contrastive_config"] == {**ContrastiveConfig(view_dim=16, memory_size=8,
                                                              qc_weight=0.25).to_dict()}
    assert "0.25·L_QC" in (dual_run / "README.md").read_text(encoding="utf-8")
    old = tmp_path / "old_run"
    shutil.copytree(dual_run, old)
    legacy = {**meta["qar_config"], **meta.pop("contrastive_config")}
    meta.pop("contrastive_sizes", None)
    (old / "final" / CONFIG_FILE).write_text(json.dumps({**meta, "qar_config": legacy}))
    recipe = yaml.safe_load((old / "train_config.yaml").read_text())
    recipe["model"] = {**recipe["model"], **recipe.pop("contrastive")}
    (old / "train_config.yaml").write_text(yaml.safe_dump(recipe))
    read = read_adapter_config(old / "final")
    assert read["qar"] == QARConfig(rank=4, lora_r=4)
    assert read["contrastive_config"]["qc_weight"] == 0.25 and "view_dim" not in read["qar_config"]
    model, tok = load_trained(old)
    again, _ = load_trained(dual_run)
    assert torch.equal(_logits(model, tok), _logits(again, tok))
    assert "0.25·L_QC" in model_card(old)


def test_loading_a_hub_id_through_huggingface_hub(dual_run, tmp_path, monkeypatch):
    """A repo id resolves through huggingface_hub's cache (offline): the folder push_run uploads,
    placed where snapshot_download finds a downloaded repo."""
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--qlearn-test--sam-dual"
    stage_run(dual_run, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    model, tok = load_trained("qlearn-test/sam-dual")
    local, _ = load_trained(dual_run)
    assert torch.equal(_logits(model, tok), _logits(local, tok))
    from qlearn.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="neither a folder nor a hub repo"):
        load_trained("qlearn-test/not-downloaded")


def test_old_single_file_folders_still_load(tiny, tmp_path):
    from safetensors.torch import save_file

    base, tok = tiny
    model = QuerierAwareLM.from_base(copy.deepcopy(base), QARConfig(rank=4, lora_r=2))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(tmp_path / "new")
    old = tmp_path / "old"  # what qlearn wrote before: every trainable weight in one file
    old.mkdir()
    save_file({n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad},
              str(old / WEIGHTS_FILE))
    (old / CONFIG_FILE).write_text((tmp_path / "new" / CONFIG_FILE).read_text())
    back = QuerierAwareLM.from_pretrained(copy.deepcopy(base), old).eval()
    assert torch.equal(_logits(back, tok), _logits(model.eval(), tok))
    model.save_pretrained(old)  # re-saving converts it: no stale old file left to win
    assert not (old / WEIGHTS_FILE).exists() and (old / SPECIFIC_FILE).exists()


def test_a_gathered_state_dict_is_saved_or_refused_when_sharded(tiny):
    from qlearn.errors import CheckpointError

    model = QuerierAwareLM.from_base(copy.deepcopy(tiny[0]), QARConfig(rank=4, lora_r=2))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    gathered = {n: torch.full_like(p, 0.5) for n, p in params.items()}
    load_gathered(model, gathered)  # a complete state dict: its values are what gets saved
    assert all(torch.all(p == 0.5) for p in params.values())
    name = next(iter(params))
    sharded = {**gathered, name: torch.zeros(0)}  # ZeRO-3 / FSDP: a rank holds a flat shard
    with pytest.raises(CheckpointError, match="ZeRO-3 shard them"):
        load_gathered(model, sharded)
