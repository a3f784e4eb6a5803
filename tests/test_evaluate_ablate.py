"""The ablation runner: config parsing, and a two-cell grid end to end on the tiny model."""
import csv

import pytest
import yaml

from qlearn.evaluate.ablate import SYSTEMS, AblateConfig, ablate

TINY_TRAIN = {"source": "synthetic", "base_model": "tiny", "max_steps": 2, "batch_size": 2,
              "grad_accum": 1, "save_steps": 1, "save_total_limit": None, "probe_windows": 0,
              "gradient_checkpointing": False, "logging_steps": 1, "n_clusters": 2, "max_queriers": 2,
              "model": {"rank": 4, "lora_r": 4}, "contrastive": {"view_dim": 16, "memory_size": 8}}


def test_config_systems_sweeps_and_errors(tmp_path):
    cfg = AblateConfig.from_dict({"name": "x", "systems": ["Zero-shot", "Ours"], "train": TINY_TRAIN,
                                  "sweep": {"model.rank": [2, 8]}})
    assert cfg.systems[-2:] == ["Ours (model.rank=2)", "Ours (model.rank=8)"]
    assert cfg.train_config("Ours (model.rank=2)").model.rank == 2
    assert cfg.train_config("w/o clustering").n_clusters == 1
    assert cfg.train_config("w/o contrastive").contrastive.qc_weight == 0
    assert cfg.train_config("w/o multi-view").contrastive.n_views == 1
    assert cfg.train_config("Ours (frozen views)").contrastive.views_trainable is False
    assert cfg.train_config("Ours (no centering)").contrastive.qc_center is False
    assert cfg.train_config("Ours").contrastive.view_dim == 16  # the shared block is kept
    assert cfg.train_config("FT").model.specific is False
    assert cfg.train_config("w/o low-rank").model.specific_mlp == "copy_lora"
    assert cfg.train_config("w/o low-rank (random full-width)").model.specific_mlp == "full_random"
    assert cfg.train_config("w/o low-rank (full training)").model.specific_mlp == "copy_full"
    assert cfg.train_config("Ours").model.specific_mlp == "low_rank"
    assert cfg.train_config("Ours").output_dir.endswith("runs/ablate/x/runs/ours")
    assert set(SYSTEMS) >= {"w/o multi-view", "Ours (residual fusion)"}
    with pytest.raises(ValueError, match="unknown system"):
        AblateConfig.from_dict({"systems": ["Oracle"]})
    with pytest.raises(ValueError, match="unknown eval.n_tset"):
        AblateConfig.from_dict({"eval": {"n_tset": 3}})
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump({"name": "y", "train": TINY_TRAIN}))
    assert AblateConfig.from_yaml(path, ["eval.n_test=7"]).eval.n_test == 7
    with pytest.raises(ValueError, match="key=value"):
        AblateConfig.from_yaml(path, ["eval.n_test"])


@pytest.mark.slow
def test_two_cell_grid_on_tiny_model(tmp_path):
    cfg = AblateConfig.from_dict({
        "name": "tiny-grid", "systems": ["Zero-shot", "Ours", "Per-querier LoRA"], "train": TINY_TRAIN,
        "eval": {"n_test": 4, "n_val": 3, "max_new_tokens": 4},
        "output_dir": str(tmp_path / "results"), "work_dir": str(tmp_path / "work")})
    out = ablate(cfg, command="qlearn ablate --config tiny.yaml")
    rows = list(csv.DictReader(open(out / "table.csv", encoding="utf-8")))
    assert list(rows[0])[0] == "system"
    assert [r["system"] for r in rows] == ["Zero-shot", "Ours", "Per-querier LoRA"]
    assert all(r["n"] == "4" for r in rows)
    adapters = sorted((tmp_path / "work" / "runs" / "per-querier-lora").glob("*/final"))
    assert len(adapters) == 2  # one LoRA per querier kept (max_queriers: 2)
    ours = rows[1]
    assert ours["checkpoint"] in {"checkpoint-1", "final"} and ours["val_rougeL"] != ""
    assert (tmp_path / "work" / "runs" / "ours" / "checkpoint-1").is_dir()
    table = (out / "table.md").read_text(encoding="utf-8")
    assert "| Ours |" in table and "qlearn ablate --config tiny.yaml" in table
    assert (out / "rougeL.png").stat().st_size > 10_000
    # a second run reuses the finished systems instead of training again
    before = (tmp_path / "work" / "replies" / "ours.json").stat().st_mtime
    ablate(cfg)
    assert (tmp_path / "work" / "replies" / "ours.json").stat().st_mtime == before
    # `qlearn evaluate` on the trained run, beside Zero-shot, on a saved MQDialog folder
    from qlearn.cli import main
    from qlearn.data import save_mqdialog, synthetic_dataset

    save_mqdialog(synthetic_dataset(), tmp_path / "mq")
    main(["evaluate", "--model", str(tmp_path / "work" / "runs" / "ours"), "--data",
          str(tmp_path / "mq"), "--n", "3", "--max-new-tokens", "3", "--baselines", "Zero-shot",
          "--out", str(tmp_path / "ev")])
    rows = list(csv.DictReader(open(tmp_path / "ev" / "table.csv", encoding="utf-8")))
    assert [r["system"] for r in rows] == ["ours", "Zero-shot"] and rows[1]["n"] == "3"
    with pytest.raises(SystemExit, match="qlearn evaluate: .*not a folder"):
        main(["evaluate", "--model", "tiny", "--data", str(tmp_path / "nowhere")])


def test_per_querier_budget_is_shared_out():
    from evaluate_toy import toy_dataset
    from qlearn.evaluate.per_querier import steps_per_querier

    ds = toy_dataset()
    ds.train = ds.train + [w for w in ds.train if w.querier == "Ann"] * 2  # Ann: 24, Carl 8, Dee 8
    assert steps_per_querier(ds.train, 40) == {"Ann": 24, "Carl": 8, "Dee": 8}
    assert steps_per_querier(ds.train, 2) == {"Ann": 1, "Carl": 1, "Dee": 1}
