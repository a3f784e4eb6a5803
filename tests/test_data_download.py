"""`qlearn data download`: pinned manifests, sha256 checks, no re-download (file:// URLs here)."""
import json

import pytest

from qlearn.data import DataError, build_dataset
from qlearn.data.download import MANIFESTS, download, load_manifest, make_manifest, sha256
from qlearn.data.sources import downloadable, get_source


def test_manifests_pin_full_commits_and_match_the_local_files(data_root):
    for source in downloadable():
        m = load_manifest(source)
        assert len(m["commit"]) == 40 and m["files"]
        for f in m["files"]:
            assert f"/{m['commit']}/" in f["url"] and f["url"].startswith("https://")
            assert sha256(data_root / m["folder"] / f["path"]) == f["sha256"], f["path"]
        # the source's record (pin, folder) makes exactly the shipped manifest
        assert make_manifest(source, data_root / get_source(source).folder) == m, source


def _local(source, data_root):
    """The real manifest with its URLs pointed at the local copies."""
    m = load_manifest(source)
    for f in m["files"]:
        f["url"] = (data_root / m["folder"] / f["path"]).as_uri()
    return m


def test_download_checks_sha256_and_never_downloads_twice(data_root, tmp_path, capsys):
    m = _local("palace", data_root)
    folder = download("palace", tmp_path, manifest=m)
    assert "2 downloaded" in capsys.readouterr().out
    stamp = [(folder / f["path"]).stat().st_mtime_ns for f in m["files"]]
    download("palace", tmp_path, manifest=m)
    assert "0 downloaded, 2 already present" in capsys.readouterr().out
    assert stamp == [(folder / f["path"]).stat().st_mtime_ns for f in m["files"]]
    assert len(build_dataset("palace", "皇帝", root=tmp_path).queriers) >= 8

    bad = json.loads(json.dumps(m))
    bad["files"][0]["sha256"] = "0" * 64
    (folder / bad["files"][0]["path"]).unlink()
    with pytest.raises(DataError, match="expected 0000"):
        download("palace", tmp_path, manifest=bad, progress=False)
    assert not (folder / bad["files"][0]["path"]).exists()


def test_download_errors(tmp_path):
    with pytest.raises(DataError, match="pip install chitchat-dataset"):
        load_manifest("chitchat")
    with pytest.raises(DataError, match="no manifest"):
        load_manifest("seinfeld")
    m = {"folder": "x", "files": [{"path": "a.txt", "url": (tmp_path / "nope").as_uri(),
                                   "sha256": "0" * 64}]}
    with pytest.raises(DataError, match="cannot fetch"):
        download("palace", tmp_path, manifest=m, progress=False)
    assert MANIFESTS.is_dir()


def test_friends_from_the_downloaded_rda_equals_the_tsv(data_root, tmp_path):
    """A download holds only friends.rda (the R file); it must give the same show as the TSV."""
    import shutil

    from qlearn.data import read_show

    (tmp_path / "friends_emorynlp").mkdir()
    shutil.copy(data_root / "friends_emorynlp" / "friends.rda", tmp_path / "friends_emorynlp")
    a, b = read_show("friends", data_root), read_show("friends", tmp_path)
    assert a.chunks == b.chunks and a.dropped == b.dropped
