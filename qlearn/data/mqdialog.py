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
from pathlib import Path

from .pipeline import Dataset
from .readers import DataError
from .types import Window

SUFFIX = {"train": "train", "val": "val", "test": "dev"}


def _safe(name: str) -> str:
    return re.sub(r"[\\/:*?\"<>|\s]+", "_", name).strip("_") or "unnamed"


def save_mqdialog(ds: Dataset, out_dir: str | os.PathLike) -> Path:
    """Write ``ds`` in the MQDialog layout; returns the folder."""
    out = Path(out_dir)
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
    return out


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from e


def load_mqdialog(path: str | os.PathLike) -> Dataset:
    """Read a folder in the MQDialog layout (ours or the published one) into a :class:`Dataset`."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; give the folder that holds configs/ and one "
                        "subfolder per querier")
    meta_path = root / "configs" / "qlearn.json"
    meta = _load_json(meta_path) if meta_path.exists() else {}
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
    queriers = meta.get("queriers") or [q for q, _ in sorted(pairs.items(), key=lambda kv: kv[1])]
    for split in splits:
        splits[split].sort(key=lambda w: w.role_pair_id)  # stable: file order within a querier
    return Dataset(meta.get("source", root.name), responder, queriers, splits["train"],
                   splits["val"], splits["test"], meta.get("stats", {}))
