"""The leak audit: can a model see its validation or test answers during training?

A *target* is the final responder turn of a validation or test window: the reply the model must
generate. Training supervises the responder turns of every training window that come after the
window's first querier turn (``Window.supervised_indices``; a responder turn with no query before
it is context, never a label). The invariant qlearn keeps, for every source and responder:

    no utterance instance that is a val or test target is a supervised token in any training
    window, nor part of a training window's input.

Utterance instances are identified by their source position (chunk id, turn index in the chunk),
which qlearn's window ids carry (``{chunk}_turn_{segment start}_{final turn index}``). Exact-text
duplicates ("Yeah.", "Okay.") recur legitimately in any script, so they are reported separately
and do not break the invariant.

    >>> report = audit_dataset(ds)
    >>> report.ok, report.summary_line()
    >>> print(report.table())
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .mqdialog import load_mqdialog
from .readers import DataError
from .types import Window

HELD_OUT = ("val", "test")
_ID = re.compile(r"^(?P<chunk>.+)_turn_(?P<start>\d+)_(?P<end>\d+)$")


def positions(window: Window) -> list[tuple[str, int]] | None:
    """``(chunk id, turn index)`` of each turn of ``window``, from its id; ``None`` when the id
    does not carry positions (e.g. the published MQDialog files)."""
    m = _ID.match(window.id)
    if not m:
        return None
    end, n = int(m["end"]), len(window.turns)
    return [(m["chunk"], end - n + 1 + j) for j in range(n)]


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass
class SplitAudit:
    """What training could see of one held-out split's targets."""

    split: str
    targets: int = 0
    supervised_in_train: int = 0  # the same utterance instance is a training label
    in_train_input: int = 0  # ... or any turn of a training window (context included)
    text_duplicates: int = 0  # a training label with the same text (legitimate repeats included)
    in_other_held_out: int = 0  # test only: the same instance is a val window's label
    leading_responder_windows: int = 0  # windows of this split whose first turn is the responder's
    examples: list[str] = field(default_factory=list)  # window ids of position leaks (first 5)


@dataclass
class AuditReport:
    source: str
    responder: str
    train_windows: int
    train_leading_responder: int  # training windows that start with a responder turn
    splits: dict[str, SplitAudit]
    positions_known: bool  # False: ids without positions, only the text check ran

    @property
    def leaked(self) -> int:
        """Held-out targets that are a supervised token or an input turn of training."""
        return sum(s.in_train_input for s in self.splits.values())

    @property
    def ok(self) -> bool:
        return self.positions_known and self.leaked == 0

    def summary_line(self) -> str:
        if not self.positions_known:
            head = "audit: positions unknown (window ids carry none), text check only"
        else:
            head = ("audit ok" if self.ok else "audit FAILED") + ": " + ", ".join(
                f"{s.supervised_in_train}/{s.targets} {s.split} targets supervised in training"
                f" ({s.in_train_input} in its input)" for s in self.splits.values())
        dups = ", ".join(f"{s.text_duplicates} {s.split}" for s in self.splits.values())
        return (f"{self.source}/{self.responder} {head}; exact-text repeats of a training label: "
                f"{dups}; training windows opening with the responder: "
                f"{self.train_leading_responder}/{self.train_windows}")

    def table(self) -> str:
        head = ("| split | targets | supervised in train | in train input | text repeats | "
                "test target = val label | windows opening with the responder |\n"
                "|---|---:|---:|---:|---:|---:|---:|")
        rows = [f"| train | – | – | – | – | – | {self.train_leading_responder} of "
                f"{self.train_windows} |"]
        for s in self.splits.values():
            other = s.in_other_held_out if s.split == "test" else "–"
            rows.append(f"| {s.split} | {s.targets} | {s.supervised_in_train} | "
                        f"{s.in_train_input} | {s.text_duplicates} | {other} | "
                        f"{s.leading_responder_windows} |")
        return "\n".join([head, *rows])

    def to_dict(self) -> dict:
        return {"source": self.source, "responder": self.responder, "ok": self.ok,
                "positions_known": self.positions_known, "train_windows": self.train_windows,
                "train_leading_responder": self.train_leading_responder,
                "splits": {k: {f: getattr(v, f) for f in v.__dataclass_fields__}
                           for k, v in self.splits.items()}}


def audit_dataset(ds) -> AuditReport:
    """Audit one :class:`~qlearn.data.Dataset` (built or loaded from the MQDialog layout)."""
    supervised, seen, labels_text = set(), set(), Counter()
    known = True
    for w in ds.train:
        pos = positions(w)
        idx = w.supervised_indices()
        labels_text.update(_norm(w.turns[i].text) for i in idx)
        if pos is None:
            known = False
            continue
        supervised.update(pos[i] for i in idx)
        seen.update(pos)
    val_labels = set()
    for w in ds.val:
        pos = positions(w)
        if pos is not None:
            val_labels.update(pos[i] for i in w.supervised_indices())
    splits = {}
    for name in HELD_OUT:
        a = SplitAudit(name)
        for w in ds.splits[name]:
            a.targets += 1
            a.leading_responder_windows += w.turns[0].speaker == w.responder
            a.text_duplicates += labels_text[_norm(w.reply)] > 0
            pos = positions(w)
            if pos is None:
                known = False
                continue
            target = pos[-1]
            a.supervised_in_train += target in supervised
            a.in_train_input += target in seen
            if name == "test":
                a.in_other_held_out += target in val_labels
            if target in seen and len(a.examples) < 5:
                a.examples.append(w.id)
        splits[name] = a
    lead = sum(w.turns[0].speaker == w.responder for w in ds.train)
    return AuditReport(ds.source, ds.responder, len(ds.train), lead, splits, known)


def audit_path(path) -> list[AuditReport]:
    """Audit a folder in the MQDialog layout, or every such folder directly under ``path`` (what
    ``qlearn data build --all --out DIR`` writes)."""
    root = Path(path)
    if (root / "configs").is_dir() or not root.is_dir():
        return [audit_dataset(load_mqdialog(root))]
    found = sorted(p for p in root.iterdir() if (p / "configs").is_dir())
    if not found:
        raise DataError(f"{root}: no MQDialog folder here or below (a folder with configs/ and one "
                        "subfolder per querier); build one with `qlearn data build --out DIR`")
    return [audit_dataset(load_mqdialog(p)) for p in found]
