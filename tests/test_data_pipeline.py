"""Pipeline steps on hand-written (invented) dialogues, and readers' errors on broken files."""
import pytest

from qlearn.data import BuildConfig, DataError, Turn, build_dataset, load_mqdialog, save_mqdialog
from qlearn.data import synthetic_dataset
from qlearn.data.pipeline import near_duplicates, two_person_segments, windows_of
from qlearn.data.readers import Chunk, strip_parentheticals


def T(spec):
    """'A:hi B:yo' -> turns (invented text)."""
    return [Turn(*x.split(":", 1)) for x in spec.split()]


def test_two_person_segments_are_maximal_runs_with_both_speakers():
    chunk = Chunk("c", T("R:a Q:b R:c X:d R:e R:f Q:g Q:h"))
    runs = [(q, s, len(r)) for q, s, r in two_person_segments(chunk, "R")]
    assert runs == [("Q", 0, 3), ("X", 2, 4), ("Q", 4, 4)]  # R:c starts X's run, R:e R:f end it
    # the official scan drops a run that reaches the end of the chunk
    assert [s for _, s, _ in two_person_segments(chunk, "R", drop_trailing=True)] == [0, 2]
    assert list(two_person_segments(Chunk("c", T("R:a R:b Y:c Y:d")), "X")) == []  # no X
    assert list(two_person_segments(Chunk("c", T("R:a R:b")), "R")) == []  # R alone
    assert [q for q, _, _ in two_person_segments(Chunk("c", T("Q:a X:b R:c")), "R")] == ["X"]


def test_windows_are_longest_suffixes_below_the_limit():
    turns = [Turn(s, c * 100) for s, c in zip("QRQR", "xyzw")]
    from collections import Counter

    dropped = Counter()
    got = list(windows_of(turns, "R", 512, dropped))
    assert [(i, len(w)) for i, w in got] == [(1, 2), (3, 4)]  # 4 * 102 = 408 < 512
    got = list(windows_of(turns, "R", 300, dropped))
    assert [(i, len(w)) for i, w in got] == [(1, 2), (3, 2)]  # 3 * 102 = 306 >= 300
    got = list(windows_of([Turn("Q", "a"), Turn("R", "b" * 600)], "R", 512, dropped))
    assert got == [] and dropped["window: reply alone too long"] == 1


def test_near_duplicates_keep_the_longer():
    a, b, c = T("A:1 B:2 A:3 B:4 A:5"), T("A:1 B:2 A:3 B:4"), T("A:1 B:9 A:8")
    assert near_duplicates([b, a, c]) == [False, True, True]
    assert near_duplicates([b, a], threshold=1.0) == [True, True]


def test_strip_parentheticals():
    assert strip_parentheticals("Hi (waves) there （笑） ok") == "Hi there ok"
    assert strip_parentheticals("(only a note)") == ""


def test_synthetic_dataset_is_deterministic_and_valid(tmp_path):
    a, b = synthetic_dataset(seed=1), synthetic_dataset(seed=1)
    assert a.train == b.train and a.test == b.test and len(a.queriers) == 4
    assert synthetic_dataset(n_queriers=2).queriers != a.queriers
    for w in a.train + a.val + a.test:
        assert w.turns[-1].speaker == "Sam" and {t.speaker for t in w.turns} == {"Sam", w.querier}
    back = load_mqdialog(save_mqdialog(a, tmp_path / "syn"))
    assert back.train == a.train and back.queriers == a.queriers
    with pytest.raises(ValueError, match="n_queriers"):
        synthetic_dataset(n_queriers=9)


def test_loader_reads_the_published_layout_without_qlearn_files(tmp_path):
    a = synthetic_dataset()
    save_mqdialog(a, tmp_path)
    (tmp_path / "configs" / "qlearn.json").unlink()
    for f in tmp_path.glob("*/*_val.json"):
        f.unlink()
    back = load_mqdialog(tmp_path)
    assert back.responder == "Sam" and back.queriers == a.queriers and back.val == []
    assert back.source == tmp_path.name and back.lang == "en"
    assert back.test == a.test


def test_reader_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bigbang_tbbtcorpus" / "raw_corpus"
    bad.mkdir(parents=True)
    (bad / "1_1.txt").write_bytes(b"Scene: a room\nAmy: fine\nBob: caf\xe9\n")
    with pytest.raises(DataError, match=r"1_1\.txt, line 3: not valid utf-8"):
        build_dataset("bigbang", "Amy", root=tmp_path)
    pal = tmp_path / "palace_dykgchat"
    pal.mkdir()
    (pal / "people_mapping.txt").write_text(" A  | 1 | A\n", encoding="utf-8")
    (pal / "corpus.txt").write_text("0 | A | | hello\n0 | B\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"corpus\.txt, line 2: expected"):
        build_dataset("palace", "A", root=tmp_path)
    with pytest.raises(DataError, match="missing .*friends"):
        build_dataset("friends", "Ross", root=tmp_path)


def test_a_filter_that_leaves_nothing_says_which(tmp_path):
    from qlearn.data import build_from_show
    from qlearn.data.readers import Show

    show = Show("toy", "en", [Chunk(f"c{i}", T(f"R:a{i} Q:b{i} R:c{i}")) for i in range(5)])
    with pytest.raises(DataError, match=r">= 20 two-person segments.*best: Q with 5"):
        build_from_show(show, "R", BuildConfig(min_utterances=1))
    ds = build_from_show(show, "R", BuildConfig(min_utterances=1, min_segments=5))
    assert ds.queriers == ["Q"] and len(ds.test) == 1 and ds.stats["segments"] == 5
