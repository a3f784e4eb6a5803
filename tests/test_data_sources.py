"""The source registry: one Source entry is all a new source needs (invented data only)."""
from pathlib import Path

import pytest

from qlearn.cli import main
from qlearn.cluster import default_k
from qlearn.data import SOURCES, DataError, Source, all_responders, build_dataset, get_source
from qlearn.data.readers import Chunk, Show
from qlearn.data.types import Turn


def read_toy(folder: Path) -> Show:
    """'speaker: text' lines; a blank line ends a chunk."""
    show = Show("toy", "zh", [])
    for i, block in enumerate((folder / "script.txt").read_text(encoding="utf-8").split("\n\n")):
        turns = [Turn(*(x.strip() for x in line.split(":", 1))) for line in block.splitlines()]
        show.chunks.append(Chunk(f"episode_0_chunk_{i}", turns))
    return show


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A registered "toy" source (removed again afterwards) and its data root."""
    blocks = []
    for q in ("Bob", "Cy"):
        for i in range(6):
            blocks.append(f"{q}: {q} asks question {i}\nAnn: answer {i} to {q}\n"
                          f"{q}: then {q} says thing {i}\nAnn: reply {i} for {q}")
    (tmp_path / "toy_folder").mkdir()
    (tmp_path / "toy_folder" / "script.txt").write_text("\n\n".join(blocks), encoding="utf-8")
    record = Source("toy", read_toy, "toy_folder", "zh", {"Ann": 7}, k=3, min_utterances=2,
                    min_segments=1)
    monkeypatch.setitem(SOURCES, "toy", record)  # the one entry a new source needs
    return record, tmp_path


def test_one_entry_registers_a_source_end_to_end(toy, tmp_path):
    record, root = toy
    assert get_source("toy") is record and ("toy", "Ann") in all_responders()
    ds = build_dataset("toy", "Ann", root=root)
    assert ds.queriers == ["Bob", "Cy"] and ds.train and ds.test
    assert ds.lang == "zh"  # the record's language, though the invented text is English
    assert default_k("Ann", "toy") == 7 and default_k("Dee", "toy") == 3
    with pytest.raises(DataError, match=r"name a responder \(MQDialog's: \['Ann'\]\)"):
        build_dataset("toy", None, root=root)
    main(["data", "build", "--source", "toy", "--responder", "Ann", "--root", str(root),
          "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "toy_Ann").is_dir()


def test_unknown_source_is_one_line_naming_the_valid_ones():
    with pytest.raises(DataError) as e:
        get_source("seinfeld")
    assert str(e.value) == f"unknown source 'seinfeld'; choose one of {', '.join(SOURCES)}"
    assert "\n" not in str(e.value) and "friends" in str(e.value)


def test_records_hold_the_paper_defaults():
    assert [s for s in SOURCES if SOURCES[s].lang == "zh"] == ["swordsman", "palace"]
    assert default_k("Sheldon") == 10 and default_k("吕秀才", "swordsman") == 5
    assert default_k(None, "chitchat") == 10 and default_k(None) == 5
    assert get_source("chitchat").min_segments == 0 and get_source("friends").min_segments == 20
    with pytest.raises(DataError, match="chitchat ships as a PyPI package"):
        from qlearn.data.download import load_manifest

        load_manifest("chitchat")
