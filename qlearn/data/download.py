"""``qlearn data download SOURCE --root DIR``: fetch the public transcripts at pinned commits.

Each source with a pin (:mod:`qlearn.data.sources`) has a manifest
``qlearn/resources/manifests/<source>.json``, shipped as package data
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
from ..errors import DataError
from .sources import SOURCES, get_source

MANIFESTS = resource("manifests")  # package data (importlib.resources), so it works from a wheel

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_manifest(source: str, local_folder: str | os.PathLike,
                  folder_name: str | None = None) -> dict:
    """Manifest of ``source`` with sha256 computed from a local copy (maintainers only), from the
    pin of its :class:`~qlearn.data.sources.Source`; ``folder_name`` (under ROOT) defaults to the
    source's folder."""
    record = get_source(source)
    pin, folder = record.pin, Path(local_folder)
    if pin is None:
        raise DataError(f"{source} {record.install}")
    files = pin.files
    if pin.glob:  # one pattern for a folder of files
        files = [(pin.pattern.format(name=p.name), str(p.relative_to(folder)))
                 for p in sorted(folder.glob(pin.glob))]
    rows = []
    for remote, local in files:
        p = folder / local
        url = f"https://raw.githubusercontent.com/{pin.repo}/{pin.commit}/{quote(remote)}"
        rows.append({"path": local, "url": url, "sha256": sha256(p), "size": p.stat().st_size})
    return {"source": source, "repo": pin.repo, "commit": pin.commit,
            "folder": folder_name or record.folder, "files": rows}


def manifest_dir():
    """Where the manifests live: the one place that knows it (a folder or a Traversable)."""
    return MANIFESTS


def load_manifest(source: str, manifests=None) -> dict:
    """The pinned manifest of ``source`` (``manifests``: a folder or a Traversable of them)."""
    record = SOURCES.get(source)
    if record is not None and record.pin is None:
        raise DataError(f"{source} {record.install}")
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
            # urllib, not pooch: pooch cannot read the file:// URLs of local mirrors and the offline
            # tests, and the sha256 pin, .part file and one-line errors are all it would add
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

    record = SOURCES.get(source)
    if record is not None and record.pin is None:
        return []
    derived = record.derived if record is not None else {}  # files qlearn makes from the pinned ones
    folder = Path(folder)
    manifest = load_manifest(source)
    expected = {f["path"]: (f["sha256"], f.get("size")) for f in manifest["files"]}
    expected.update(derived)
    root = root_hint or str(folder.parent)
    cache, dirty, missing = _read_cache(), False, []
    for rel, (want, size) in expected.items():
        path = folder / rel
        try:
            st = path.stat()
        except OSError:
            if rel not in derived:
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
            fix = ("delete it (the reader then reads the downloaded files, slower) or restore it"
                   if rel in derived else
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
