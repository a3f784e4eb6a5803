"""The statistics table per responder (printed, and saved as Markdown and CSV)."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .audit import audit_dataset

COLUMNS = [("source", "source"), ("responder", "responder"), ("queriers", "queriers"),
           ("segments", "segments"), ("train_windows", "train"), ("val_windows", "val"),
           ("test_windows", "test"), ("turns_per_window", "turns/window"),
           ("chars_per_window", "chars/window"), ("dropped_lines", "dropped lines"),
           ("leaked_targets", "val/test targets in train")]


def stats_rows(datasets, audits=None) -> list[dict]:
    """One row per Dataset: the numbers of the table (``dropped lines`` = reader + cleaning).
    ``audits``: the datasets' :class:`~qlearn.data.audit.AuditReport` s if already made."""
    rows = []
    audits = audits or [audit_dataset(ds) for ds in datasets]
    for ds, audit in zip(datasets, audits):
        s = ds.stats
        row = {k: s.get(k) for k, _ in COLUMNS if k not in ("dropped_lines", "leaked_targets")}
        row["source"], row["responder"] = ds.source, ds.responder
        # not lines: segments and windows, and chats the responder is not in (chitchat)
        later = ("window", "train window", "near-duplicate seg", "chat without")
        row["dropped_lines"] = sum(v for k, v in s.get("dropped", {}).items()
                                   if not k.startswith(later))
        # 0 unless a held-out target is seen in training
        row["leaked_targets"] = audit.leaked if audit.positions_known else "unknown"
        rows.append(row)
    return rows


def to_markdown(rows: list[dict]) -> str:
    head = "| " + " | ".join(h for _, h in COLUMNS) + " |"
    sep = "|" + "|".join("---" if k in ("source", "responder") else "---:"
                         for k, _ in COLUMNS) + "|"
    body = ["| " + " | ".join(str(r[k]) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[k for k, _ in COLUMNS], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def dropped_markdown(ds) -> str:
    """Every removed line/chunk/segment/window of one build, by reason."""
    rows = [f"| {k} | {v} |" for k, v in ds.stats.get("dropped", {}).items()]
    rej = ds.stats.get("rejected_queriers", {})
    text = "| dropped (reason) | count |\n|---|---:|\n" + "\n".join(rows)
    if rej:
        text += ("\n\nCandidates below min_segments (segments): "
                 + ", ".join(f"{q} ({n})" for q, n in sorted(rej.items(), key=lambda kv: -kv[1])))
    return text


def write_stats(datasets, out_dir: str | os.PathLike, rows=None) -> tuple[Path, Path]:
    """Save ``stats.md`` and ``stats.csv`` under ``out_dir`` (``rows``: from :func:`stats_rows`,
    if already made); returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = rows or stats_rows(datasets)
    md, cs = out / "stats.md", out / "stats.csv"
    md.write_text("# Dataset statistics\n\n" + to_markdown(rows) + "\n", encoding="utf-8")
    cs.write_text(to_csv(rows), encoding="utf-8")
    return md, cs
