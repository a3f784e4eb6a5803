"""The grid's systems are entries of one registry: a new kind or ablation is one entry."""
import csv
from dataclasses import dataclass
from typing import ClassVar

import pytest

from qlearn.evaluate.ablate import AblateConfig, ablate, plot_table
from qlearn.evaluate.baselines import PROMPT_BASELINES
from qlearn.evaluate.systems import SYSTEMS, PerQuerier, PromptBaseline, System, Trained, system_color

TRAIN = {"source": "synthetic", "base_model": "tiny", "n_clusters": 1, "max_steps": 2}


@dataclass(frozen=True)
class Echo(System):
    """A made-up kind: replies with each window's query (no model, no training)."""

    trains: ClassVar[bool] = False

    def prepare(self, grid, run, rec):
        rec["checkpoint"] = "echo"
        return lambda: [w.query for w in grid.test]


@pytest.fixture
def registered(monkeypatch):
    """Register a system (its one entry) for one test; removed afterwards."""
    return lambda system: monkeypatch.setitem(SYSTEMS, system.name, system)


def test_the_built_in_kinds():
    kinds = {n: type(s) for n, s in SYSTEMS.items()}
    assert [n for n, k in kinds.items() if k is PromptBaseline] == list(PROMPT_BASELINES)
    assert kinds["FT"] is kinds["w/o clustering"] is Trained and kinds["Per-querier LoRA"] is PerQuerier
    assert [system_color(n) for n in ("Zero-shot", "FT", "Ours", "Ours (model.rank=2)", "w/o clustering")] \
        == ["tab:gray", "tab:gray", "tab:red", "tab:red", "tab:blue"]
    assert str(SYSTEMS["Zero-shot"]) == "prompting baseline, base model"
    assert str(SYSTEMS["FT"]) == "{'model.specific': False}"


def test_a_new_kind_is_one_entry_end_to_end(registered, tmp_path):
    registered(Echo("Echo", color="tab:green"))
    cfg = AblateConfig.from_dict({"name": "echo", "systems": ["Echo"], "train": TRAIN,
                                  "seeds": [0, 1], "eval": {"n_test": 3, "reference": "Echo"},
                                  "output_dir": str(tmp_path / "out"), "work_dir": str(tmp_path / "w")})
    assert cfg.runs("Echo") == ["Echo"]  # it does not train: no runs per seed
    out = ablate(cfg)
    rows = list(csv.DictReader(open(out / "table.csv", encoding="utf-8")))
    assert [r["system"] for r in rows] == ["Echo"] and rows[0]["checkpoint"] == "echo"
    assert float(rows[0]["rougeL"]) >= 0 and (tmp_path / "w" / "replies" / "echo.json").is_file()
    assert system_color("Echo") == "tab:green"
    fig = plot_table([{"system": "Echo", **{k: 1.0 for k in ("rougeL", "rougeL_low", "rougeL_high",
                      "rougeL_paper", "rougeL_paper_low", "rougeL_paper_high")}}])
    assert fig.axes[0].patches[0].get_facecolor()[:3] == pytest.approx((0.17, 0.63, 0.17), abs=0.01)


def test_a_new_ablation_is_one_entry(registered):
    registered(Trained("w/o views", {"contrastive.n_views": 1}))
    cfg = AblateConfig.from_dict({"systems": ["w/o views", "Zero-shot"], "train": TRAIN,
                                  "seeds": [3]})
    assert cfg.runs("w/o views") == ["w/o views [seed 3]"] and cfg.runs("Zero-shot") == ["Zero-shot"]
    tc = cfg.train_config("w/o views [seed 3]")
    assert tc.contrastive.n_views == 1 and tc.seed == 3 and tc.output_dir.endswith("w-o-views-seed-3")


def test_custom_entries_keep_their_kind():
    cfg = AblateConfig.from_dict({"systems": ["Per-querier LoRA", "FT", "Zero-shot", "Mine"],
                                  "train": TRAIN, "custom": {
                                      "Per-querier LoRA": {"max_steps": 4}, "FT": {"lr": 1e-3},
                                      "Zero-shot": {"lr": 1e-3}, "Mine": {"model.rank": 2}}})
    assert isinstance(cfg.system("Per-querier LoRA"), PerQuerier)
    assert cfg.train_config("Per-querier LoRA").max_steps == 4
    assert cfg.system("FT").overrides == {"lr": 1e-3} and cfg.system("FT").color == "tab:gray"
    assert cfg.system("Zero-shot") is SYSTEMS["Zero-shot"]
    assert type(cfg.system("Mine")) is Trained and cfg.train_config("Mine").model.rank == 2


def test_unknown_system_is_one_line_naming_the_built_ins():
    with pytest.raises(ValueError) as e:
        AblateConfig.from_dict({"systems": ["Oracle"]})
    msg = str(e.value)
    assert "\n" not in msg and "unknown system(s) ['Oracle']" in msg
    assert f"built in: {list(SYSTEMS)}" in msg and "custom:" in msg


def test_trained_kinds_reply_with_what_they_trained(monkeypatch):
    """Trained: the grid's selected checkpoint; PerQuerier: its adapters (both faked here)."""
    from types import SimpleNamespace

    from qlearn.evaluate import per_querier, systems

    tc = SimpleNamespace(output_dir="run")
    grid = SimpleNamespace(test=["w1", "w2"], ds="ds", gen_kwargs=lambda: {"max_new_tokens": 1},
                           cfg=SimpleNamespace(train_config=lambda run: tc),
                           train_and_select=lambda run, rec: ("best", "tok", rec))
    monkeypatch.setattr(systems, "model_replies", lambda m, t, ws, **kw: [f"{m}:{w}" for w in ws])
    assert SYSTEMS["Ours"].prepare(grid, "Ours", {})() == ["best:w1", "best:w2"]
    monkeypatch.setattr(per_querier, "train_per_querier", lambda cfg, ds, out: {"Ann": out})
    monkeypatch.setattr(per_querier, "per_querier_replies",
                        lambda folders, cfg, ws, **kw: [f"{folders['Ann']}:{w}" for w in ws])
    rec = {}
    assert SYSTEMS["Per-querier LoRA"].prepare(grid, "Per-querier LoRA", rec)() == ["run:w1", "run:w2"]
    assert rec["checkpoint"] == "final" and SYSTEMS["Per-querier LoRA"].probe_model(grid, "x", rec) is None
