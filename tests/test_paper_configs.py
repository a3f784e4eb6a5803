"""The paper recipes keep what model selection needs, and selection reads validation only."""
from pathlib import Path

import pytest

from qlearn.train import TrainConfig
from qlearn.trainer import training_arguments

PAPER = sorted((Path(__file__).resolve().parents[1] / "configs" / "paper").glob("*.yaml"))


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_config_keeps_every_epoch(path):
    cfg = TrainConfig.from_yaml(path)
    assert cfg.epochs >= 20 and cfg.max_steps == -1
    assert cfg.save_steps is None and cfg.save_total_limit is None, \
        "a limit would delete the epochs that validation selection chooses among"
    args = training_arguments(cfg, "no")
    assert args.save_strategy == "epoch" and args.save_total_limit is None


def test_there_are_twelve_paper_configs():
    assert len(PAPER) == 12


def test_selection_scores_every_checkpoint_on_validation_only(tmp_path, monkeypatch):
    """Grid.train_and_select: every epoch checkpoint is a candidate, each is scored on the val
    windows (never test), and the best validation score wins."""
    from types import SimpleNamespace

    from qlearn.evaluate import ablate
    from qlearn.model import WEIGHTS_FILE

    run = tmp_path / "run"
    for i, name in enumerate(["checkpoint-10", "checkpoint-20", "checkpoint-30", "final"]):
        (run / name).mkdir(parents=True)
        (run / name / WEIGHTS_FILE).write_bytes(bytes([i]))  # distinct weights per epoch
    val = [SimpleNamespace(id=f"v{i}", reply="val reply") for i in range(3)]
    test = [SimpleNamespace(id=f"t{i}", reply="test reply") for i in range(3)]
    scores = {"checkpoint-10": 0.1, "checkpoint-20": 0.9, "checkpoint-30": 0.5, "final": 0.4}
    seen = []
    monkeypatch.setattr(ablate, "load_trained", lambda c, tc: (c.name, None))
    monkeypatch.setattr(ablate, "rouge_l", lambda preds, refs, lang: scores[preds[0]])

    def replies(model, tok, windows, **kw):
        seen.append([w.id for w in windows])
        return [model] * len(windows)

    monkeypatch.setattr(ablate, "model_replies", replies)
    grid = ablate.Grid(ablate.AblateConfig(train={"output_dir": str(run)}))
    grid.val, grid.test, grid.lang = val, test, "en"
    grid.cfg.train_config = lambda system: SimpleNamespace(output_dir=str(run))
    model, _, rec = grid.train_and_select("Ours", {})
    assert model == "checkpoint-20" and rec["checkpoint"] == "checkpoint-20"
    assert len(seen) == 4 and all(ids == ["v0", "v1", "v2"] for ids in seen)
