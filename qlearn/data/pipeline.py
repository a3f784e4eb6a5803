"""The MQDialog pipeline (docs/method.md §2): clean -> candidate queriers -> two-person segments ->
seeded split -> windows < 512 characters ending with the responder -> training windows start at
their first querier turn -> de-duplication -> ids.

Every threshold is a :class:`BuildConfig` field whose default is the paper's value; every line,
chunk, segment or window that a step removes is counted by reason in ``Dataset.stats["dropped"]``.
"""
from __future__ import annotations

import os
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from .download import verify_source
from .readers import GROUP, GROUP_LABELS, Chunk, DataError, Show, require_path
from .sources import SOURCES, Source, get_source
from .types import Turn, Window


@dataclass
class BuildConfig:
    """Pipeline options. ``None`` means "the paper's value for this source"."""

    seed: int = 0
    max_chars: int = 512  # a window's sum of len(speaker + "\n" + text) must stay below this
    min_utterances: int | None = None  # candidate querier: >= this many utterances in the show
    min_segments: int | None = None  # keep a querier with >= this many two-person segments (20)
    test_fraction: float = 0.2  # of each querier's segments, before windowing
    val_fraction: float = 0.1  # of the remaining train segments (qlearn's model-selection split)
    dedup_threshold: float = 0.8  # near-duplicate: > this share of the shorter's turns in the other
    dedup_train: bool = True  # drop train windows contained in a longer one (official)
    drop_trailing_runs: bool = False  # official quirk: drop a segment that runs to a chunk's end
    session_gap_hours: float = 3.0  # chats: a new session after a longer silence

    def min_utt(self, source: str) -> int:
        """``min_utterances``, else the source's paper value (:class:`~qlearn.data.sources.Source`)."""
        if self.min_utterances is not None:
            return self.min_utterances
        return SOURCES.get(source, Source).min_utterances  # not registered: Source's default

    def min_seg(self, source: str) -> int:
        """``min_segments``, else the source's paper value (chats: 0, scripts: 20)."""
        if self.min_segments is not None:
            return self.min_segments
        return SOURCES.get(source, Source).min_segments


@dataclass
class Dataset:
    """One responder's data: windows per split plus the numbers that explain how they were made."""

    source: str
    responder: str
    queriers: list[str]  # index = role_pair_id - 1
    train: list[Window]
    val: list[Window]
    test: list[Window]
    stats: dict = field(default_factory=dict)

    @property
    def lang(self) -> str:
        """The source's language (:data:`~qlearn.data.sources.SOURCES`); other data: "zh" when it
        is mostly in CJK script, else "en"."""
        if self.source in SOURCES:
            return SOURCES[self.source].lang
        text = "".join(t.text for w in (self.test or self.train)[:50] for t in w.turns)
        cjk = sum("\u4e00" <= ch <= "\u9fff" for ch in text)
        return "zh" if cjk > 0.3 * max(len(text), 1) else "en"

    @property
    def splits(self) -> dict[str, list[Window]]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def __repr__(self):
        return (f"Dataset({self.source}/{self.responder}: {len(self.queriers)} queriers, "
                f"train={len(self.train)} val={len(self.val)} test={len(self.test)})")


# --------------------------------------------------------------------------------------------
# steps

def near_duplicates(items: list[list[Turn]], threshold: float = 0.8) -> list[bool]:
    """Which items to keep: an item is dropped when more than ``threshold`` of its turns appear in
    a longer (or equally long, earlier) kept item. Inverted index, so it is ~linear in practice."""
    order = sorted(range(len(items)), key=lambda i: (-len(items[i]), i))
    index: dict[str, list[int]] = defaultdict(list)
    keep = [False] * len(items)
    for i in order:
        keys = [f"{t.speaker}\n{t.text}" for t in items[i]]
        hits: dict[int, int] = {}
        for k in keys:
            for j in index.get(k, ()):
                hits[j] = hits.get(j, 0) + 1
        if hits and max(hits.values()) > threshold * len(keys):
            continue
        keep[i] = True
        for k in set(keys):
            index[k].append(i)
    return keep


def clean_chunks(chunks: list[Chunk], threshold: float, dropped: Counter) -> list[Chunk]:
    """Drop empty utterances, single-speaker chunks and near-duplicate chunks (keep the longer)."""
    out = []
    for c in chunks:
        turns = [t for t in c.turns if t.text.strip()]
        dropped["empty utterance"] += len(c.turns) - len(turns)
        if len({t.speaker for t in turns}) < 2:
            dropped["single-speaker chunk (utterances)"] += len(turns)
            continue
        out.append(Chunk(c.id, turns))
    keep = near_duplicates([c.turns for c in out], threshold)
    dropped["near-duplicate chunk (utterances)"] += sum(len(c.turns) for c, k in zip(out, keep)
                                                        if not k)
    return [c for c, k in zip(out, keep) if k]


_CLEANED: dict = {}  # (id(show), threshold) -> (show, chunks, dropped): clean once per process


def clear_caches() -> None:
    """Forget this process's parsed shows and cleaned chunks (the next build starts cold)."""
    read_cached.cache_clear()
    _CLEANED.clear()


def _cleaned(show: Show, threshold: float):
    key = (id(show), threshold)
    if key not in _CLEANED or _CLEANED[key][0] is not show:
        dropped = Counter(show.dropped)
        _CLEANED[key] = (show, clean_chunks(show.chunks, threshold, dropped), dropped)
    _, chunks, dropped = _CLEANED[key]
    return chunks, Counter(dropped)


def two_person_segments(chunk: Chunk, r: str, drop_trailing: bool = False):
    """All maximal runs of consecutive turns spoken only by r and one other person q, containing
    both, in one pass: yields (q, start, turns). Runs of different queriers may share the block of
    r's turns between them (r q1 r r q2: the r r belongs to both)."""
    turns = chunk.turns
    start, q, last_q = 0, None, -1

    def close(end):
        run = turns[start:end]
        if q is not None and q != GROUP and any(t.speaker == r for t in run):
            if not (drop_trailing and end == len(turns)):
                return (q, start, run)

    for i, t in enumerate(turns):
        if t.speaker == r:
            continue
        if q is None or t.speaker == q:
            q, last_q = t.speaker, i
            continue
        found = close(i)
        if found:
            yield found
        start, q, last_q = last_q + 1, t.speaker, i
    found = close(len(turns))
    if found:
        yield found


def windows_of(turns: list[Turn], r: str, max_chars: int, dropped: Counter):
    """For each responder turn (2nd turn onward): the longest suffix ending there that stays below
    ``max_chars``; kept when it holds both speakers. Yields (end index, window turns)."""
    lengths = [len(t.speaker) + 1 + len(t.text) for t in turns]
    for i in range(1, len(turns)):
        if turns[i].speaker != r:
            continue
        if lengths[i] >= max_chars:
            dropped["window: reply alone too long"] += 1
            continue
        start, total = i, lengths[i]
        while start > 0 and total + lengths[start - 1] < max_chars:
            start -= 1
            total += lengths[start]
        win = turns[start:i + 1]
        if len({t.speaker for t in win}) < 2:
            dropped["window: responder only"] += 1
            continue
        yield i, win


def _without_leading_responder(turns: list[Turn], r: str, dropped: Counter) -> list[Turn]:
    """A training window starts at its first querier turn. The responder turns before it answer
    nobody in the window, and between two queriers they belong to both queriers' segments
    (r q1 r r q2: the r r closes q1's segment and opens q2's), so when q1's segment is held out
    they are q1's val/test targets. The official code drops one leading responder turn at
    training time; qlearn drops the whole leading block, at build time, so the saved training
    files and the audit (:mod:`qlearn.data.audit`) see exactly what training sees."""
    first = next(i for i, t in enumerate(turns) if t.speaker != r)
    dropped["train window: leading responder turn (turns)"] += first
    return turns[first:]


def _split(items: list, seed: int, salt: str, fraction: float):
    """Seeded shuffle, then (rest, held-out); at least one held out when there are >= 2 items."""
    items = list(items)
    random.Random(f"{seed}/{salt}").shuffle(items)
    n = round(len(items) * fraction)
    if fraction > 0 and n == 0 and len(items) >= 2:
        n = 1
    return items[n:], items[:n]


def _most_frequent(show: Show, n: int = 15) -> str:
    return ", ".join(f"{s} ({k})" for s, k in show.speaker_counts.most_common(n) if s != GROUP)


def _default_responder(chunks: list[Chunk]) -> str:
    """The speaker present in the most chunks (chats: the most active sender)."""
    n = Counter(s for c in chunks for s in {t.speaker for t in c.turns})
    return min(n, key=lambda s: (-n[s], s))


# --------------------------------------------------------------------------------------------
# the whole pipeline

def build_from_show(show: Show, responder: str | None = None,
                    config: BuildConfig = BuildConfig()) -> Dataset:
    cfg, src = config, show.source
    record = SOURCES.get(src)
    chat = record is not None and record.chat
    known = list(record.responders) if record else None  # MQDialog's responders
    if responder is None:
        if not chat:
            raise DataError(f"{src}: name a responder (MQDialog's: {known}); most "
                            f"frequent speakers: {_most_frequent(show)}")
        responder = _default_responder(show.chunks)
    if responder in GROUP_LABELS:
        raise DataError(f"{src}: {responder!r} is a group label (lines spoken by several people "
                        f"at once), not a person who can be a responder; choose one such as "
                        f"{known or _most_frequent(show)}")
    if show.speaker_counts[responder] == 0:
        raise DataError(f"{src}: unknown responder {responder!r}. Most frequent speakers: "
                        f"{_most_frequent(show)}")
    if chat:  # the owner's export holds only the owner's own chats
        mine = [c for c in show.chunks if any(t.speaker == responder for t in c.turns)]
        dropped = Counter(show.dropped)
        dropped["chat without the responder (utterances)"] += (
            sum(len(c.turns) for c in show.chunks) - sum(len(c.turns) for c in mine))
        chunks = clean_chunks(mine, cfg.dedup_threshold, dropped)
    else:
        chunks, dropped = _cleaned(show, cfg.dedup_threshold)
    counts = Counter(t.speaker for c in chunks for t in c.turns)

    # candidate queriers, in order of first appearance
    min_utt, min_seg = cfg.min_utt(src), cfg.min_seg(src)
    first = {}
    for c in chunks:
        for t in c.turns:
            first.setdefault(t.speaker, len(first))
    cands = [s for s in sorted(first, key=first.get)
             if counts[s] >= min_utt and s not in (responder, GROUP)]
    if not cands:
        raise DataError(f"{src}/{responder}: no speaker has >= {min_utt} utterances "
                        f"(BuildConfig.min_utterances); most frequent: {_most_frequent(show)}")

    # two-person segments per querier, cleaned, then the >= min_segments filter
    by_q = defaultdict(list)
    for c in chunks:
        for q, s, run in two_person_segments(c, responder, cfg.drop_trailing_runs):
            by_q[q].append((c.id, s, run))
    segs, rejected = {}, {}
    for q in cands:
        found = by_q.get(q, [])
        keep = near_duplicates([run for _, _, run in found], cfg.dedup_threshold)
        dropped["near-duplicate segment"] += keep.count(False)
        found = [f for f, k in zip(found, keep) if k]
        if len(found) >= max(min_seg, 1):
            segs[q] = found
        else:
            rejected[q] = len(found)
    if chat:  # chats: queriers by descending number of sessions (official order)
        segs = dict(sorted(segs.items(), key=lambda kv: -len(kv[1])))
    if not segs:
        best = max(rejected.items(), key=lambda kv: kv[1])
        raise DataError(f"{src}/{responder}: no querier has >= {min_seg} two-person segments "
                        f"(BuildConfig.min_segments); best: {best[0]} with {best[1]}")
    queriers = list(segs)

    splits = {"train": [], "val": [], "test": []}
    n_segments = Counter()
    for pid, q in enumerate(queriers, start=1):
        salt = f"{src}/{responder}/{q}"
        train_val, test = _split(segs[q], cfg.seed, f"{salt}/test", cfg.test_fraction)
        train, val = _split(train_val, cfg.seed, f"{salt}/val", cfg.val_fraction)
        for name, part in (("train", train), ("val", val), ("test", test)):
            n_segments[name] += len(part)
            wins = []
            for cid, start, run in sorted(part, key=lambda x: (x[0], x[1])):
                seg_id = f"{cid}_turn_{start}"
                for end, turns in windows_of(run, responder, cfg.max_chars, dropped):
                    if name == "train":
                        turns = _without_leading_responder(turns, responder, dropped)
                    wins.append(Window(id=f"{seg_id}_{start + end}", turns=turns,
                                       responder=responder, querier=q, role_pair_id=pid,
                                       segment_id=seg_id, split=name))
            if name == "train" and cfg.dedup_train:
                keep = near_duplicates([w.turns for w in wins], cfg.dedup_threshold)
                dropped["train window contained in a longer one"] += keep.count(False)
                wins = [w for w, k in zip(wins, keep) if k]
            splits[name].extend(wins)

    all_w = splits["train"] + splits["val"] + splits["test"]
    stats = {
        "source": src, "responder": responder, "queriers": len(queriers),
        "chunks": len(chunks), "utterances": sum(len(c.turns) for c in chunks),
        "segments": sum(n_segments.values()),
        **{f"{k}_segments": n_segments[k] for k in splits},
        **{f"{k}_windows": len(v) for k, v in splits.items()},
        "turns_per_window": round(sum(len(w.turns) for w in all_w) / max(len(all_w), 1), 2),
        "chars_per_window": round(sum(len(t.speaker) + 1 + len(t.text) for w in all_w
                                      for t in w.turns) / max(len(all_w), 1), 1),
        "windows_per_querier": {q: sum(1 for w in all_w if w.querier == q) for q in queriers},
        "rejected_queriers": rejected,  # candidate -> its segment count, below min_segments
        "dropped": dict(sorted(dropped.items())),
        "notes": list(show.notes),
        "config": asdict(cfg),
    }
    return Dataset(src, responder, queriers, splits["train"], splits["val"], splits["test"], stats)


def build_dataset(source: str, responder: str | None = None, root: str | os.PathLike | None = None,
                  config: BuildConfig = BuildConfig()) -> Dataset:
    """Build one responder's dataset from the raw files under ``root`` (default
    ``$QLEARN_DATA_ROOT``). ``responder=None`` is allowed for chats such as "chitchat" (the most
    active sender)."""
    show = read_show(source, root, config.session_gap_hours)
    return build_from_show(show, responder, config)


# --------------------------------------------------------------------------------------------
# reading a source by name (its record: qlearn.data.sources)

def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """``root``, else ``$QLEARN_DATA_ROOT``, else None."""
    root = root or os.environ.get("QLEARN_DATA_ROOT")
    return Path(root).expanduser() if root else None


def source_folder(source: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of ``source`` under the data root (a pip-installed source needs no root)."""
    record = get_source(source)
    base = data_root(root)
    if base is None:
        if record.pin is None:
            return Path(record.folder)
        raise DataError(f"{source}: no data root. Pass --root DIR (root=...) or set "
                        f"QLEARN_DATA_ROOT; `qlearn data download {source} --root DIR` fetches "
                        f"the files")
    sub = base / record.folder
    return sub if sub.is_dir() or record.pin is None else require_path(sub, source)


@lru_cache(maxsize=16)
def read_cached(source: str, folder: str, gap: float, signature: tuple) -> Show:
    """The source's reader on ``folder`` (cached by the files' ``signature``)."""
    record = get_source(source)
    return record.reader(Path(folder), gap) if record.chat else record.reader(Path(folder))


def _signature(folder: Path) -> tuple:
    """(name, size, mtime) of every file under ``folder``: a changed file is read again."""
    if not folder.is_dir():
        return ()
    return tuple(sorted((str(p.relative_to(folder)), st.st_size, st.st_mtime_ns)
                        for p in folder.rglob("*") if p.is_file() and (st := p.stat())))


def verify_default() -> bool:
    """``$QLEARN_NO_VERIFY=1`` (set by ``--no-verify``) turns the manifest check off."""
    return os.environ.get("QLEARN_NO_VERIFY", "").strip().lower() in ("", "0", "false", "no")


def read_show(source: str, root: str | os.PathLike | None = None,
              session_gap_hours: float = 3.0, verify: bool | None = None) -> Show:
    """Parse one source (cached per process: build several responders for the price of one).

    The files are then checked against the download manifest's sha256 (``verify``; default on
    unless ``$QLEARN_NO_VERIFY=1``): a truncated or edited transcript raises
    :class:`~qlearn.errors.IntegrityError` naming the file. Hashes are cached by size and mtime,
    so this costs a ``stat`` per file after the first time."""
    folder = source_folder(source, root)
    show = read_cached(source, str(folder.resolve()), session_gap_hours, _signature(folder))
    if (verify_default() if verify is None else verify) and get_source(source).pin is not None:
        from ..errors import warn

        for note in verify_source(source, folder, None if root is None else str(root)):
            warn(note)
    return show
