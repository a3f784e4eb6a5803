"""``qlearn data download SOURCE --root DIR``: fetch the public transcripts at pinned commits.

Each source has a manifest ``qlearn/resources/manifests/<source>.json``, shipped as package data
(repo, commit, and for every file its URL at that commit, its path under ``ROOT/<folder>/`` and
its sha256). A file already present with the right sha256 is never downloaded again; a download
whose sha256 differs is refused.
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

from ..resources import resource
from ..errors import DataError  # not from .readers: readers calls verify_source (no cycle)

MANIFESTS = resource("manifests")  # package data (importlib.resources), so it works from a wheel

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


def make_manifest(source: str, local_folder: str | os.PathLike,
                  folder_name: str | None = None) -> dict:
    """Manifest of ``source`` with sha256 computed from a local copy (maintainers only);
    ``folder_name`` (under ROOT) defaults to the one of the existing manifest."""
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
    return {"source": source, "repo": repo, "commit": commit,
            "folder": folder_name or load_manifest(source)["folder"], "files": rows}


def manifest_dir():
    """Where the manifests live: the one place that knows it (a folder or a Traversable)."""
    return MANIFESTS


def load_manifest(source: str, manifests=None) -> dict:
    """The pinned manifest of ``source`` (``manifests``: a folder or a Traversable of them)."""
    if source == "chitchat":
        raise DataError("chitchat ships as a PyPI package: pip install chitchat-dataset "
                        "(nothing to download)")
    manifests = manifest_dir() if manifests is None else manifests
    path = manifests / f"{source}.json"
    if not path.is_file():
        known = sorted(p.name[:-5] for p in manifests.iterdir() if p.name.endswith(".json"))
        raise DataError(f"no manifest {source}.json in {manifests}; sources with one: "
                        f"{', '.join(known)}")
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
                            f"(manifest qlearn/resources/manifests/{source}.json); not saved")
        part.replace(target)
    if progress:
        print(f"{source}: {len(todo)} downloaded, {len(manifest['files']) - len(todo)} already "
              f"present in {folder}")
    return folder


# ---- integrity of the local copy, checked at build time ---------------------------------------
# files qlearn reads that are derived from a manifest file (not downloaded): path -> sha256, size
DERIVED = {"friends": {"friends.tsv.gz": (
    "eaebcb1043074cb0d9d2a3a5f5153ca2c3b072d32b7b4e937d43a0855c1320dd", 1681474)}}
VERIFY_CACHE = "verified_files.json"  # in qlearn.assets.cache_dir(): path -> [size, mtime, sha256]


def _cache_path() -> Path:
    from ..assets import cache_dir

    return cache_dir() / VERIFY_CACHE


def _read_cache() -> dict:
    try:
        return json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        tmp.replace(path)
    except OSError:  # a read-only cache only costs the hashing next time
        pass


def verify_source(source: str, folder: str | os.PathLike, root_hint: str | None = None) -> list[str]:
    """Check every file of ``folder`` listed in the source's manifest (and the derived files qlearn
    reads) against its sha256; raise :class:`IntegrityError` naming the first file that differs.

    Hashes are cached by (path, size, mtime) in the qlearn cache, so a second build only stats the
    files. Returns notes on manifest files that are absent (the reader uses what is there)."""
    from ..errors import IntegrityError

    if source == "chitchat":
        return []
    folder = Path(folder)
    manifest = load_manifest(source)
    expected = {f["path"]: (f["sha256"], f.get("size")) for f in manifest["files"]}
    expected.update(DERIVED.get(source, {}))
    root = root_hint or str(folder.parent)
    cache, dirty, missing = _read_cache(), False, []
    for rel, (want, size) in expected.items():
        path = folder / rel
        try:
            st = path.stat()
        except OSError:
            if rel not in DERIVED.get(source, {}):
                missing.append(rel)
            continue
        key = str(path.resolve())
        hit = cache.get(key)
        if hit and hit[:2] == [st.st_size, st.st_mtime_ns]:
            got = hit[2]
        elif size is not None and st.st_size != size:
            got = None
        else:
            got = sha256(path)
            cache[key], dirty = [st.st_size, st.st_mtime_ns, got], True
        if got != want:
            if dirty:
                _write_cache(cache)
            what = (f"is {st.st_size:,} bytes, the manifest says {size:,}" if got is None
                    else f"has sha256 {got[:12]}..., the manifest says {want[:12]}...")
            fix = ("delete it (the reader then reads friends.rda, slower) or restore it"
                   if rel in DERIVED.get(source, {}) else
                   f"restore it with `qlearn data download {source} --root {root}`")
            raise IntegrityError(f"{path} {what} (truncated or edited?): {fix}; to build from "
                                 "deliberately edited files pass --no-verify (verify=False)")
    if dirty:
        _write_cache(cache)
    if missing:
        return [f"{source}: {len(missing)} of {len(manifest['files'])} manifest files are not in "
                f"{folder} ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); the "
                f"build uses the others; `qlearn data download {source} --root {root}` fetches "
                "them"]
    return []
