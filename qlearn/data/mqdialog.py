"""The official MQDialog layout on disk, written and read.

    <out>/<querier>/<source>_<responder>-<querier>_<responder>_response_L512_train.json
                                                                     ..._val.json   (qlearn's)
                                                                     ..._dev.json   (= test)
    <out>/configs/role_pair_id.json   {responder: {querier: role_pair_id}}
    <out>/configs/role_list.json      [responder, querier, ...]
    <out>/configs/qlearn.json         source, responder and build statistics (qlearn only)

Each JSON file is a list of samples ``{id, conversations: [{from, value}], target_role,
input_role, role_pair_id[, cluster_id]}``. ``load_mqdialog`` also reads the published data
(any ``*_train.json`` / ``*_dev.json`` under one folder per querier; ``_val.json`` optional).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from .pipeline import Dataset
from .readers import DataError
from .types import Window

SUFFIX = {"train": "train", "val": "val", "test": "dev"}


def _safe(name: str) -> str:
    return re.sub(r"[\\/:*?\"<>|\s]+", "_", name).strip("_") or "unnamed"


def _is_mqdialog_folder(folder: Path) -> bool:
    """Only configs/ and querier subfolders of *.json files: safe to replace as a whole."""
    for child in folder.iterdir():
        if not child.is_dir() or any(not f.name.endswith(".json") for f in child.iterdir()):
            return False
    return True


def save_mqdialog(ds: Dataset, out_dir: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write ``ds`` in the MQDialog layout; returns the folder.

    The folder is written next to ``out_dir`` and renamed into place, so a rebuild *replaces* an
    earlier one as a whole (no stale querier folder survives) and an interrupted write leaves the
    old folder intact. ``overwrite=False`` refuses a non-empty ``out_dir`` (``qlearn data build``
    without ``--overwrite``); a non-empty folder that is not an MQDialog layout is never replaced.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file, not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out} already holds a dataset; pass --overwrite (overwrite=True) to "
                            "replace it as a whole, or choose another --out")
        if not _is_mqdialog_folder(out):
            raise DataError(f"{out} is not empty and not an MQDialog folder (it holds other "
                            "files); refusing to replace it: choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_mqdialog(ds, tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_mqdialog(ds: Dataset, out: Path) -> None:
    (out / "configs").mkdir(parents=True, exist_ok=True)
    for q in ds.queriers:
        folder = out / _safe(q)
        folder.mkdir(parents=True, exist_ok=True)
        r = _safe(ds.responder)
        stem = f"{_safe(ds.source)}_{r}-{_safe(q)}_{r}_response_L512"
        for split, windows in ds.splits.items():
            rows = [w.to_mqdialog() for w in windows if w.querier == q]
            (folder / f"{stem}_{SUFFIX[split]}.json").write_text(
                json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    ids = {ds.responder: {q: i for i, q in enumerate(ds.queriers, start=1)}}
    (out / "configs" / "role_pair_id.json").write_text(
        json.dumps(ids, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "configs" / "role_list.json").write_text(
        json.dumps([ds.responder, *ds.queriers], ensure_ascii=False), encoding="utf-8")
    meta = {"source": ds.source, "responder": ds.responder, "queriers": ds.queriers,
            "stats": ds.stats}
    (out / "configs" / "qlearn.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1),
                                                 encoding="utf-8")


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from e


def _listed_queriers(root: Path) -> set[str] | None:
    """Folder names of the queriers in configs/role_pair_id.json (None without that file)."""
    ids_path = root / "configs" / "role_pair_id.json"
    if not ids_path.exists():
        return None
    ids = _load_json(ids_path)
    if not isinstance(ids, dict) or not all(isinstance(v, dict) for v in ids.values()):
        raise DataError(f"{ids_path}: expected {{responder: {{querier: role_pair_id}}}}")
    return {_safe(q) for pairs in ids.values() for q in pairs} | {q for pairs in ids.values()
                                                                     for q in pairs}


def load_mqdialog(path: str | os.PathLike) -> Dataset:
    """Read a folder in the MQDialog layout (ours or the published one) into a :class:`Dataset`."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; give the folder that holds configs/ and one "
                        "subfolder per querier")
    meta_path = root / "configs" / "qlearn.json"
    meta = _load_json(meta_path) if meta_path.exists() else {}
    listed = _listed_queriers(root)
    if listed is not None:
        stray = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name != "configs"
                       and not d.name.startswith(".") and d.name not in listed
                       and any(d.glob("*.json")))
        if stray:
            raise DataError(f"{root}: querier folder(s) {stray} are not listed in "
                            f"configs/role_pair_id.json (stale files from an earlier build?); "
                            "rebuild into an empty folder (qlearn data build --overwrite) or "
                            "delete them")
    splits = {"train": [], "val": [], "test": []}
    for split, suffix in SUFFIX.items():
        for f in sorted(root.glob(f"*/*_{suffix}.json")):
            if f.parent.name == "configs":
                continue
            rows = _load_json(f)
            if not isinstance(rows, list):
                raise DataError(f"{f}: expected a JSON list of samples")
            for i, row in enumerate(rows):
                try:
                    splits[split].append(Window.from_mqdialog(row, split=split))
                except (KeyError, TypeError, ValueError) as e:
                    raise DataError(f"{f}, sample {i}: missing or bad field {e}; a sample "
                                    "needs id, conversations, target_role, input_role, "
                                    "role_pair_id") from e
    every = splits["train"] + splits["val"] + splits["test"]
    if not every:
        raise DataError(f"{root}: no *_train.json / *_dev.json files in its querier subfolders")
    responders = sorted({w.responder for w in every})
    responder = meta.get("responder") or responders[0]
    if len(responders) > 1:
        raise DataError(f"{root}: several responders {responders}; keep one per folder")
    pairs = {}
    ids_path = root / "configs" / "role_pair_id.json"
    if ids_path.exists():
        pairs = _load_json(ids_path).get(responder, {})
    for w in every:
        pairs.setdefault(w.querier, w.role_pair_id)
    clash = {}
    for w in every:
        clash.setdefault(w.role_pair_id, set()).add(w.querier)
    shared = {i: sorted(qs) for i, qs in clash.items() if len(qs) > 1}
    if shared:
        i, qs = next(iter(sorted(shared.items())))
        raise DataError(f"{root}: queriers {qs} share role_pair_id {i} (files of two different "
                        "builds mixed in one folder?); rebuild into an empty folder")
    queriers = meta.get("queriers") or [q for q, _ in sorted(pairs.items(), key=lambda kv: kv[1])]
    for split in splits:
        splits[split].sort(key=lambda w: w.role_pair_id)  # stable: file order within a querier
    return Dataset(meta.get("source", root.name), responder, queriers, splits["train"],
                   splits["val"], splits["test"], meta.get("stats", {}))
