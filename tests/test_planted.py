"""The planted-signal benchmark: dataset invariants, the asker-fit checker, and a tiny grid."""
import csv
import re

import pytest

from qlearn.data.planted import (HIDDEN_LABEL, QUERIERS, RULES, consistent_askers, mark,
                                 markers_in, planted_dataset)
from qlearn.evaluate.asker_fit import asker_fit, asker_fit_scores, rule_followed


@pytest.fixture(scope="module")
def visible():
    return planted_dataset("visible", seed=0)


@pytest.fixture(scope="module")
def hidden():
    return planted_dataset("hidden", seed=0)


def pairs(windows):
    return {(w.query, w.querier) for w in windows}


def test_same_queries_asked_by_several_queriers(visible):
    askers = {}
    for w in visible.train:
        askers.setdefault(w.query, set()).add(w.querier)
    assert all(len(a) >= 2 for a in askers.values())
    assert {w.querier for w in visible.train} == set(QUERIERS)
    # the target is the asker's opener + the real reply; history replies carry no opener
    for w in visible.train[:50]:
        assert w.reply.startswith(RULES[w.querier] + " ")
        assert all(rule_followed(t.text, RULES) is None for t in w.turns[:-1])


def test_test_and_val_pairs_are_unseen(visible):
    train, val, test = pairs(visible.train), pairs(visible.val), pairs(visible.test)
    assert not test & train and not val & train and not test & val
    train_queries = {q for q, _ in train}
    seen = [w for w in visible.test if w.query in train_queries]
    assert 0 < len(seen) < len(visible.test)  # seen only from other askers, plus new queries
    assert visible.stats["test_queries_seen_in_train"] == len(seen)
    assert len({w.id for w in visible.train + visible.val + visible.test}) == (
        len(visible.train) + len(visible.val) + len(visible.test))


def test_hidden_variant_has_no_names_and_the_same_draws(visible, hidden):
    for w in hidden.train + hidden.val + hidden.test:
        assert {t.speaker for t in w.turns} == {HIDDEN_LABEL, "Sam"}
        assert not any(re.search(rf"\b{q}\b", t.text, re.I) for t in w.turns for q in QUERIERS)
    for v, h in zip(visible.test, hidden.test):
        assert (v.querier, [t.text for t in v.turns]) == (h.querier, [t.text for t in h.turns])
    # identity cues are partial and shared: the asker is always consistent with them, but often
    # not alone; the recorded ceiling is the Bayes rate 1/|consistent|
    sizes = [len(consistent_askers(w)) for w in hidden.test]
    assert all(w.querier in consistent_askers(w) for w in hidden.test)
    assert {1, 2} <= set(sizes) and 0.5 < hidden.stats["hidden_ceiling"]["test"] < 0.85
    assert hidden.stats["hidden_ceiling"]["test"] == pytest.approx(
        sum(1 / s for s in sizes) / len(sizes), abs=1e-4)


def test_deterministic_given_the_seed(visible):
    again = planted_dataset("visible", seed=0)
    assert [(w.id, w.turns) for w in again.test] == [(w.id, w.turns) for w in visible.test]
    other = planted_dataset("visible", seed=1)
    assert [w.turns for w in other.test] != [w.turns for w in visible.test]
    with pytest.raises(ValueError, match="planted variant 'names'"):
        planted_dataset("names")


def test_markers_round_trip():
    for m in ("smile", "so", "bang", "tbh"):
        assert markers_in(mark("I went to the park today.", m)) == {m}
    assert markers_in("I went to the park today.") == set()


def test_asker_fit_checker_on_hand_made_replies():
    replies = ["Certainly, it is at noon.", "LOL yeah, no way", "lol, yeah sure",
               "Oh sweetie, of course", "With respect, I disagree", "Sure, why not", ""]
    askers = ["Ana", "Ben", "Ben", "Dev", "Dev", "Cleo", "Ana"]
    assert asker_fit_scores(replies, askers, RULES) == [1, 1, 1, 0, 1, 0, 0]
    res = asker_fit(replies, askers, RULES)
    assert res["asker_fit"] == pytest.approx(4 / 7)
    assert res["other_rule"] == pytest.approx(1 / 7)  # Cleo's opener to Dev
    assert res["no_rule"] == pytest.approx(2 / 7)
    assert res["chance"] == pytest.approx((5 / 7) / 4)
    assert res["asker_fit_low"] <= res["asker_fit"] <= res["asker_fit_high"]
    with pytest.raises(ValueError, match="no rule"):
        asker_fit_scores(["x"], ["Zed"], RULES)
    with pytest.raises(ValueError, match="one asker per reply"):
        asker_fit_scores(["x", "y"], ["Ana"], RULES)


@pytest.mark.slow
def test_tiny_grid_through_qlearn_ablate(tmp_path, monkeypatch):
    import shutil

    import yaml

    from qlearn.cli import main

    cfg = {"name": "planted-tiny", "systems": ["Zero-shot", "FT", "Ours", "Ours (residual fusion)"],
           "seeds": [1, 2],
           "train": {"source": "planted-visible", "base_model": "tiny", "max_steps": 2,
                     "batch_size": 2, "grad_accum": 1, "save_steps": 1, "save_total_limit": None,
                     "probe_windows": 0, "gradient_checkpointing": False, "logging_steps": 1,
                     "n_clusters": 1, "max_length": 128,
                     "model": {"rank": 4, "lora_r": 4},
                     "contrastive": {"view_dim": 16, "memory_size": 8}},
           "eval": {"n_test": 6, "n_val": 3, "max_new_tokens": 4, "select_on_val": False,
                    "reference": "best Ours", "curve_systems": ["FT"]},
           "output_dir": str(tmp_path / "results"), "work_dir": str(tmp_path / "work"),
           "keep_replies": True}
    path = tmp_path / "planted.yaml"
    path.write_text(yaml.safe_dump(cfg))
    main(["ablate", "--config", str(path)])
    out = tmp_path / "results"
    rows = list(csv.DictReader(open(out / "table.csv", encoding="utf-8")))
    assert [r["system"] for r in rows] == cfg["systems"]
    for r in rows:
        assert 0 <= float(r["asker_fit"]) <= 100 and float(r["asker_fit_low"]) <= float(r["asker_fit"])
    assert rows[1]["seeds"] == "2" and len(rows[1]["asker_fit_seeds"].split("/")) == 2
    best = [k for k in rows[0] if k.startswith("fit_p_vs_")]
    assert len(best) == 1 and best[0].removeprefix("fit_p_vs_") in ("ours", "ours-residual-fusion")
    runs = list(csv.DictReader(open(out / "runs.csv", encoding="utf-8")))
    assert len(runs) == 1 + 3 * 2 and {r["seed"] for r in runs[1:]} == {"1", "2"}
    curve = list(csv.DictReader(open(out / "learning_curve.csv", encoding="utf-8")))
    assert sorted({int(r["step"]) for r in curve}) == [1, 2] and len(curve) == 4
    assert (out / "learning_curve.png").stat().st_size > 5_000
    assert (out / "asker_fit.png").stat().st_size > 5_000
    assert "asker-fit" in (out / "table.md").read_text(encoding="utf-8")
    # the two seeds are different runs (different train seeds), cached separately
    assert (tmp_path / "work" / "runs" / "ft-seed-1" / "final").is_dir()
    assert (tmp_path / "work" / "runs" / "ft-seed-2" / "final").is_dir()
    # keep_replies: the results folder alone rebuilds the same tables, with no training or decoding
    assert len(list((out / "cache" / "replies").glob("*.json"))) == 7
    table, curve_csv = (out / "table.csv").read_text(), (out / "learning_curve.csv").read_text()
    shutil.rmtree(tmp_path / "work")

    def no_training(*a, **k):
        raise AssertionError("a kept run was trained again")

    monkeypatch.setattr("qlearn.train.train", no_training)
    for name in ("qlearn.evaluate.ablate.model_replies", "qlearn.evaluate.systems.model_replies",
                 "qlearn.evaluate.systems.baseline_replies"):
        monkeypatch.setattr(name, no_training)
    # ... also from another work folder: where the runs are written is not part of the cache key
    main(["ablate", "--config", str(path), "--set", f"work_dir={tmp_path / 'elsewhere'}"])
    assert (out / "table.csv").read_text() == table
    assert (out / "learning_curve.csv").read_text() == curve_csv


def test_keep_replies_refuses_copyrighted_scripts():
    from qlearn.errors import ConfigError
    from qlearn.evaluate.ablate import AblateConfig

    with pytest.raises(ConfigError, match="keep_replies.*friends.*copyrighted"):
        AblateConfig.from_dict({"systems": ["FT"], "keep_replies": True, "train": {"source": "friends"}})


def test_seeds_per_system_in_the_grid_config():
    from qlearn.evaluate.ablate import AblateConfig

    cfg = AblateConfig.from_dict({"systems": ["Zero-shot", "FT", "Ours"],
                                  "seeds": {"default": [42], "FT": [42, 7]},
                                  "train": {"source": "planted-visible"}})
    assert cfg.runs("FT") == ["FT [seed 42]", "FT [seed 7]"] and cfg.runs("Zero-shot") == ["Zero-shot"]
    assert cfg.train_config("FT [seed 7]").seed == 7
    assert cfg.train_config("FT [seed 7]").model.specific is False
    assert cfg.runs("Ours") == ["Ours [seed 42]"]
    assert AblateConfig.from_dict({"systems": ["FT"]}).runs("FT") == ["FT"]
