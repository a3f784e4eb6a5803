"""The MQDialog rebuild on the real transcripts (../shared/data or $QLEARN_DATA_ROOT).

Only counts, names and invariants are asserted: no transcript text appears in this file.
"""
from collections import Counter

import pytest

from qlearn.data import (BuildConfig, DataError, all_responders, build_dataset, load_mqdialog,
                         get_source, read_show, save_mqdialog)

MIN_QUERIERS = {"Ross": 12, "Rachel": 7, "Sheldon": 12, "Leonard": 10, "Claire": 7, "Phil": 7,
                "佟湘玉": 12, "白展堂": 10, "吕秀才": 6, "甄嬛": 12, "皇帝": 8}


@pytest.fixture(scope="module")
def datasets(data_root):
    return {(s, r): build_dataset(s, r, root=data_root) for s, r in all_responders()}


def _chars(w):
    return sum(len(t.speaker) + 1 + len(t.text) for t in w.turns)


def test_every_window_is_a_valid_sample(datasets):
    for (source, _), ds in datasets.items():
        assert ds.train and ds.val and ds.test, ds
        for split, windows in ds.splits.items():
            for w in windows:
                assert w.turns[-1].speaker == ds.responder == w.responder, w.id
                assert {t.speaker for t in w.turns} == {ds.responder, w.querier}, w.id
                assert _chars(w) < 512, w.id
                assert all(t.text.strip() for t in w.turns), w.id
                assert w.split == split and ds.queriers[w.role_pair_id - 1] == w.querier


def test_ids_are_unique_and_splits_share_no_segment(datasets):
    for ds in datasets.values():
        seg = {k: {w.segment_id for w in v} for k, v in ds.splits.items()}
        assert not seg["train"] & seg["test"], ds
        assert not seg["train"] & seg["val"] and not seg["val"] & seg["test"], ds
        ids = [w.id for w in ds.train + ds.val + ds.test]
        assert len(ids) == len(set(ids)), ds


def test_querier_counts_match_mqdialog(datasets, data_root):
    got = {r: len(ds.queriers) for (_, r), ds in datasets.items()}
    assert {s: ds.lang for (s, _), ds in datasets.items()} == {
        "friends": "en", "bigbang": "en", "modernfamily": "en", "swordsman": "zh", "palace": "zh",
        "chitchat": "en"}
    assert all(read_show(s, data_root).lang == get_source(s).lang for s, _ in datasets)  # reader = record
    for responder, least in MIN_QUERIERS.items():
        assert got[responder] >= least, (responder, got[responder])
    for ds in datasets.values():  # every querier really has data on both sides of the split
        per_q = Counter(w.querier for w in ds.train)
        assert set(per_q) == set(ds.queriers), ds
        assert ds.responder not in ds.queriers


def test_same_seed_same_dataset_other_seed_other_split(data_root):
    a = build_dataset("bigbang", "Leonard", root=data_root, config=BuildConfig(seed=3))
    b = build_dataset("bigbang", "Leonard", root=data_root, config=BuildConfig(seed=3))
    c = build_dataset("bigbang", "Leonard", root=data_root, config=BuildConfig(seed=4))
    assert a.queriers == b.queriers and a.train == b.train and a.val == b.val and a.test == b.test
    assert a.stats == b.stats
    assert {w.segment_id for w in a.test} != {w.segment_id for w in c.test}


def test_every_dropped_utterance_is_counted(datasets, data_root):
    for (source, responder), ds in datasets.items():
        if source == "chitchat":  # chitchat keeps the responder's own chats only
            continue
        show = read_show(source, data_root)
        raw = sum(len(c.turns) for c in show.chunks)
        d = ds.stats["dropped"]
        removed = (d["empty utterance"] + d["single-speaker chunk (utterances)"]
                   + d["near-duplicate chunk (utterances)"])
        assert raw == ds.stats["utterances"] + removed, (source, responder)
        assert sum(show.dropped.values()) > 0, source  # stage directions etc. were counted


def test_speaker_names_are_normalized(data_root):
    friends = read_show("friends", data_root).speaker_counts
    assert {"Rachel", "Ross", "Monica", "Chandler", "Joey", "Phoebe", "All"} <= set(friends)
    assert "Rachel Green" not in friends and "#ALL#" not in friends
    assert "Scene Directions" not in friends
    bigbang = read_show("bigbang", data_root).speaker_counts
    assert bigbang["Sheldon"] > 10000 and not any("(" in s or "Scene" in s for s in bigbang)
    sword = read_show("swordsman", data_root).speaker_counts
    assert sword["佟湘玉"] > 7000 and "掌柜" not in sword and "老白" not in sword
    palace = read_show("palace", data_root).speaker_counts
    assert palace["甄嬛"] > 3900 and "旁白" not in palace and "眉莊" not in palace
    mf = read_show("modernfamily", data_root)
    assert mf.speaker_counts["Claire"] > 3000
    assert any("without speaker labels" in n for n in mf.notes)  # unusable part is reported


def test_chitchat_default_responder_is_the_most_active_sender(datasets):
    ds = datasets[("chitchat", None)]
    show_sessions = Counter(w.querier for w in ds.train + ds.val + ds.test)
    assert ds.responder == "Alex" and len(ds.queriers) >= 8
    assert set(show_sessions) == set(ds.queriers)


def test_mqdialog_round_trip(datasets, tmp_path):
    ds = datasets[("swordsman", "吕秀才")]
    save_mqdialog(ds, tmp_path)
    files = sorted(p.name for p in tmp_path.glob("*/*.json"))
    assert "role_pair_id.json" in files and any(f.endswith("_dev.json") for f in files)
    back = load_mqdialog(tmp_path)
    assert (back.source, back.responder, back.queriers) == (ds.source, ds.responder, ds.queriers)
    assert back.train == ds.train and back.val == ds.val and back.test == ds.test
    assert back.stats["dropped"] == ds.stats["dropped"]


def test_errors_name_the_problem(data_root):
    with pytest.raises(DataError, match="unknown responder 'Gunter'.*Rachel"):
        build_dataset("friends", "Gunter", root=data_root)
    with pytest.raises(DataError, match="min_segments"):
        build_dataset("palace", "皇帝", root=data_root, config=BuildConfig(min_segments=10 ** 6))
    with pytest.raises(DataError, match="min_utterances"):
        build_dataset("bigbang", "Sheldon", root=data_root,
                      config=BuildConfig(min_utterances=10 ** 6))
    with pytest.raises(DataError, match="unknown source"):
        build_dataset("seinfeld", "Jerry", root=data_root)
    assert get_source("friends").min_utterances == 70
    assert get_source("modernfamily").min_utterances == 40


FINGERPRINT = """
import hashlib, json, sys
from qlearn.data import build_dataset
h = hashlib.sha256()
for s, r in (("chitchat", None), ("palace", "皇帝")):
    ds = build_dataset(s, r, root=sys.argv[1])
    h.update(json.dumps([ds.queriers] + [w.to_mqdialog() for w in ds.train + ds.val + ds.test],
                        ensure_ascii=False).encode())
print(h.hexdigest())
"""


def test_builds_are_identical_across_processes(data_root):
    """String hashing is randomized per process: nothing may depend on set or dict-of-set order."""
    import os
    import subprocess
    import sys

    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        res = subprocess.run([sys.executable, "-c", FINGERPRINT, str(data_root)], env=env,
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        digests.add(res.stdout.strip())
    assert len(digests) == 1


def test_statistics_table_markdown_and_csv(datasets, tmp_path):
    import csv

    from qlearn.data.stats import write_stats

    md, cs = write_stats(list(datasets.values()), tmp_path)
    rows = list(csv.DictReader(cs.open(encoding="utf-8")))
    assert len(rows) == len(datasets) == 12
    for row, ds in zip(rows, datasets.values()):
        assert row["responder"] == ds.responder and int(row["queriers"]) == len(ds.queriers)
        assert (int(row["train_windows"]), int(row["test_windows"])) == (len(ds.train), len(ds.test))
        assert f"| {ds.source} | {ds.responder} | {len(ds.queriers)} |" in md.read_text("utf-8")
