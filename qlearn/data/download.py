"""``qlearn data download SOURCE --root DIR``: fetch the public transcripts at pinned commits.

Each source has a manifest ``data/manifests/<source>.json`` (repo, commit, and for every file its
URL at that commit, its path under ``ROOT/<folder>/`` and its sha256). A file already present with
the right sha256 is never downloaded again; a download whose sha256 differs is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.request
from pathlib import Path
from urllib.parse import quote

from tqdm.auto import tqdm

from .readers import SOURCES, DataError

MANIFESTS = Path(__file__).resolve().parents[2] / "data" / "manifests"

# source -> (GitHub repo, commit, [(path in repo, path under ROOT/<folder>)]); see SOURCE.md.
# bigbang lists a folder instead: (repo, commit, remote path pattern, local glob).
PINS = {
    "friends": ("EmilHvitfeldt/friends", "f2946cf8b594258da24c93265ed763d6edaef738",
                [("data/friends.rda", "friends.rda")]),
    "bigbang": ("skashyap7/TBBTCorpus", "493ac6853a0cd0cb3a79f27b97bc814d653448cd",
                "preprocessing/raw_corpus/{name}", "raw_corpus/*.txt"),
    "modernfamily": ("TomR2022/Text-Mining-Group-Project",
                     "93af3e6cf8adf0350e9483e9ec2092755c71a58a",
                     [(f"Data/Transcripts/MFs{i}.txt", f"MFs{i}.txt") for i in (1, 2, 3, 5)]),
    "swordsman": ("gaspolymerase/wulin-dialogue-skill",
                  "e55c637be8a94e21a47c11e0f7618bad8eec15ae",
                  [(f"武林外传全剧本/武林外传全剧本{i}.txt", f"wulin_script_{i}.gb18030.txt")
                   for i in (1, 2, 3)]),
    "palace": ("Pascalson/DyKGChat", "1a6884815bbc4e3c6c3acd09f16b5a2bfe353932",
               [("data/hgzhz/raw_data/corpus.txt", "corpus.txt"),
                ("data/hgzhz/raw_data/people_mapping.txt", "people_mapping.txt")]),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_manifest(source: str, local_folder: str | os.PathLike) -> dict:
    """Manifest of ``source`` with sha256 computed from a local copy (maintainers only)."""
    repo, commit, files, *glob = PINS[source]
    folder = Path(local_folder)
    if glob:  # one pattern for a folder of files
        files = [(files.format(name=p.name), str(p.relative_to(folder)))
                 for p in sorted(folder.glob(glob[0]))]
    rows = []
    for remote, local in files:
        p = folder / local
        url = f"https://raw.githubusercontent.com/{repo}/{commit}/{quote(remote)}"
        rows.append({"path": local, "url": url, "sha256": sha256(p), "size": p.stat().st_size})
    return {"source": source, "repo": repo, "commit": commit, "folder": SOURCES[source][0],
            "files": rows}


def load_manifest(source: str, manifests: Path = MANIFESTS) -> dict:
    if source == "chitchat":
        raise DataError("chitchat ships as a PyPI package: pip install chitchat-dataset "
                        "(nothing to download)")
    path = manifests / f"{source}.json"
    if not path.exists():
        raise DataError(f"no manifest {path}; sources with one: "
                        f"{', '.join(p.stem for p in sorted(manifests.glob('*.json')))}")
    return json.loads(path.read_text(encoding="utf-8"))


def download(source: str, root: str | os.PathLike, manifest: dict | None = None,
             progress: bool = True) -> Path:
    """Fetch every file of ``source`` into ``root/<folder>/``; returns that folder."""
    manifest = manifest or load_manifest(source)
    folder = Path(root) / manifest["folder"]
    todo = [f for f in manifest["files"]
            if not ((folder / f["path"]).exists() and sha256(folder / f["path"]) == f["sha256"])]
    for f in tqdm(todo, desc=f"download {source}", unit="file", disable=not progress):
        target = folder / f["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        try:
            with urllib.request.urlopen(f["url"], timeout=60) as r, open(part, "wb") as out:
                shutil.copyfileobj(r, out)
        except OSError as e:
            part.unlink(missing_ok=True)
            raise DataError(f"{source}: cannot fetch {f['url']} ({e}); check the connection, or "
                            f"copy the files into {folder} by hand") from e
        got = sha256(part)
        if got != f["sha256"]:
            part.unlink()
            raise DataError(f"{source}: {f['url']} has sha256 {got}, expected {f['sha256']} "
                            f"(manifest data/manifests/{source}.json); not saved")
        part.replace(target)
    if progress:
        print(f"{source}: {len(todo)} downloaded, {len(manifest['files']) - len(todo)} already "
              f"present in {folder}")
    return folder
