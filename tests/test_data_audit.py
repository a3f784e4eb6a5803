"""The leak audit: no val/test target is supervised in (or part of) any training window.

On invented dialogues: the shared reply block between two queriers (R Q1 R R Q2), which leaked
before the fix, and an audit that catches a planted leak. On the real transcripts: the invariant
for the four responders the review measured (Ross, Sheldon, Phil, 佟湘玉), and the CLI.
"""
import copy
import subprocess
import sys
from collections import Counter

import pytest

from qlearn.data import (BuildConfig, Turn, audit_dataset, build_dataset, build_from_show,
                         save_mqdialog)
from qlearn.data.audit import positions
from qlearn.data.readers import Chunk, Show


def _show(n_chunks=60):
    """Chunks of the shape that leaked: R Q1 R R Q2 R Q2 R (invented text, unique per turn)."""
    chunks = []
    for c in range(n_chunks):
        spec = [("R", "hi"), ("Ann", "how"), ("R", "fine"), ("R", "and you"), ("Bob", "meh"),
                ("R", "why"), ("Bob", "tired"), ("R", "sleep")]
        chunks.append(Chunk(f"episode_1_chunk_{c}", [Turn(s, f"{t} {c}") for s, t in spec]))
    return Show("friends", "en", chunks)


def test_shared_reply_block_never_reaches_training():
    cfg = BuildConfig(min_utterances=1, min_segments=1, val_fraction=0.2)
    ds = build_from_show(_show(), "R", cfg)
    assert {w.querier for w in ds.test} == {"Ann", "Bob"}  # both queriers have held-out parts
    assert all(w.turns[0].speaker != "R" for w in ds.train)  # training starts at a query
    assert ds.stats["dropped"]["train window: leading responder turn (turns)"] > 0
    rep = audit_dataset(ds)
    assert rep.ok and rep.leaked == 0 and rep.train_leading_responder == 0
    # Ann's test targets include the shared block ("fine", "and you") that opens Bob's segment
    ann_targets = {w.reply.split()[0] for w in ds.test if w.querier == "Ann"}
    assert {"fine", "and"} <= ann_targets
    # positions come from the ids and match the turns
    w = ds.train[0]
    assert [p[1] for p in positions(w)] == list(range(positions(w)[0][1], positions(w)[-1][1] + 1))


def test_audit_catches_a_planted_leak():
    cfg = BuildConfig(min_utterances=1, min_segments=1, val_fraction=0.2)
    ds = build_from_show(_show(), "R", cfg)
    leaky = copy.copy(ds)
    leaky.train = ds.train + [ds.test[0]]  # a test window trained on
    rep = audit_dataset(leaky)
    assert not rep.ok and rep.splits["test"].supervised_in_train >= 1
    assert ds.test[0].id in rep.splits["test"].examples
    assert "audit FAILED" in rep.summary_line()
    # a test target that is only *context* of a training window also counts as seen
    w = ds.test[0]
    ctx = copy.deepcopy(w)
    ctx.turns = w.turns + [Turn("Ann", "again"), Turn("R", "bye")]
    m = positions(w)[-1]
    ctx.id = f"{m[0]}_turn_0_{m[1] + 2}"  # two turns later in the same chunk
    leaky.train = ds.train + [ctx]
    rep = audit_dataset(leaky)
    assert rep.splits["test"].in_train_input >= 1


@pytest.mark.parametrize("source,responder", [("friends", "Ross"), ("bigbang", "Sheldon"),
                                              ("modernfamily", "Phil"), ("swordsman", "佟湘玉")])
def test_real_builds_have_no_held_out_target_in_training(data_root, source, responder):
    ds = build_dataset(source, responder, root=data_root)
    rep = audit_dataset(ds)
    assert rep.positions_known
    for s in rep.splits.values():
        assert s.targets > 100
        assert s.supervised_in_train == 0 and s.in_train_input == 0, rep.table()
    assert rep.train_leading_responder == 0
    # exact-text repeats are legitimate ("Yeah.") and reported, not hidden
    assert rep.splits["test"].text_duplicates > 0


def test_cli_audit_reads_a_built_folder_and_fails_on_a_leak(data_root, tmp_path):
    ds = build_dataset("modernfamily", "Phil", root=data_root)
    good = save_mqdialog(ds, tmp_path / "good")
    run = [sys.executable, "-m", "qlearn.cli", "data", "audit"]
    out = subprocess.run(run + [str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "modernfamily/Phil audit ok" in out.stdout
    bad = copy.copy(ds)
    bad.train = ds.train + ds.test[:3]
    save_mqdialog(bad, tmp_path / "bad")
    out = subprocess.run(run + [str(tmp_path / "bad")], capture_output=True, text=True)
    assert out.returncode == 1 and "audit FAILED" in out.stdout
    assert "| test | " in out.stdout  # the table is printed for a failing dataset
    assert Counter(p.name for p in good.iterdir())["configs"] == 1
