"""Readers: one function per source, each turning raw files into a :class:`Show` (the sources and
their readers are listed in :mod:`qlearn.data.sources`).

A show is a list of chunks (a scene, or one chat session) of ``Turn(speaker, text)``, with speaker
names normalized the way MQDialog names them. Every line a reader does not turn into an utterance
is counted by reason in ``Show.dropped`` (nothing is lost silently).
"""
from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from ..errors import DataError
from .types import Turn

# a line spoken by several named people at once: a third speaker, never a querier
GROUP = "(several)"
# speaker labels that name a group, not a person: never a responder
GROUP_LABELS = frozenset({GROUP, "All", "众人"})

__all__ = ["DataError", "GROUP", "GROUP_LABELS", "Chunk", "Show"]  # DataError: old path


@dataclass
class Chunk:
    id: str  # MQDialog style: episode_<e>_chunk_<c>
    turns: list[Turn]


@dataclass
class Show:
    source: str
    lang: str  # "en" or "zh"
    chunks: list[Chunk]
    dropped: Counter = field(default_factory=Counter)  # reason -> lines
    notes: list[str] = field(default_factory=list)  # what is unusable, in words

    @property
    def speaker_counts(self) -> Counter:
        return Counter(t.speaker for c in self.chunks for t in c.turns)


# --------------------------------------------------------------------------------------------
# helpers

_PAREN = re.compile(r"\s*[(（][^()（）]*[)）]\s*")


def strip_parentheticals(text: str) -> str:
    """Remove ``(stage notes)`` (half- or full-width) and squeeze the spaces left behind."""
    prev = None
    while prev != text:  # nested parentheses: innermost first
        prev, text = text, _PAREN.sub(" ", text)
    return " ".join(text.split())


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); check the file and its "
                        "permissions, or re-download it with `qlearn data download`") from e
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not valid {encoding} (byte {e.start}); this file "
                        f"must be {encoding}: re-download it with `qlearn data download`") from e


def require_path(path: Path, source: str) -> Path:
    """``path`` when it exists, else a :class:`DataError` naming the data root and the download."""
    if not path.exists():
        raise DataError(f"{source}: missing {path}. Set --root / QLEARN_DATA_ROOT to the folder "
                        f"holding the transcripts, or fetch them: qlearn data download {source} "
                        f"--root DIR")
    return path


def _add(chunks: list[Chunk], cid: str, turns: list[Turn]):
    if turns:
        chunks.append(Chunk(cid, turns))


# --------------------------------------------------------------------------------------------
# Friends (emorynlp character mining, via the `friends` R package)

FRIENDS_NAMES = {"Rachel Green": "Rachel", "Ross Geller": "Ross", "Chandler Bing": "Chandler",
                 "Monica Geller": "Monica", "Joey Tribbiani": "Joey", "Phoebe Buffay": "Phoebe",
                 "Mike Hannigan": "Mike", "Richard Burke": "Richard", "Janice Litman Goralnik":
                 "Janice", "Carol Willick": "Carol", "Charlie Wheeler": "Charlie", "Emily Waltham":
                 "Emily", "#ALL#": "All"}


def _friends_rows(folder: Path):
    tsv = folder / "friends.tsv.gz"
    if tsv.exists():  # the same table as friends.rda, ~50x faster to read
        yield from _tsv_rows(tsv, ("text", "speaker", "season", "episode", "scene"))
        return
    import warnings

    import pandas as pd
    import rdata

    with warnings.catch_warnings():  # "Missing constructor for R class tbl_df": harmless
        warnings.simplefilter("ignore")
        rda = require_path(folder / "friends.rda", "friends")
        try:
            frame = rdata.read_rda(str(rda))["friends"]
        except Exception as e:  # truncated xz, not an RData file, no `friends` object
            raise DataError(f"{rda}: unreadable R data file ({type(e).__name__}: {e}); "
                            "re-download it: qlearn data download friends --root DIR") from e
    for lineno, row in enumerate(frame.to_dict("records"), start=1):
        yield lineno, {k: ("" if pd.isna(v) else str(v)) for k, v in row.items()}


def _tsv_rows(path: Path, columns: tuple[str, ...]):
    """``(line number, row dict)`` of a gzipped TSV with a header; every decode or parse failure
    (truncated gzip, invalid UTF-8, a row without tabs or with missing fields) is a DataError
    naming the file and line."""
    fix = ("re-create it from friends.rda (delete it: the reader then falls back to friends.rda) "
           "or restore it; `qlearn data download friends --root DIR` fetches friends.rda")
    lineno = 1
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}, line 1: header lacks column(s) {missing} (has "
                                f"{reader.fieldnames}); {fix}")
            for lineno, row in enumerate(reader, start=2):
                if None in row or any(row.get(c) is None for c in columns):
                    raise DataError(f"{path}, line {lineno}: {len([v for v in row.values() if v is not None])}"
                                    f" tab-separated fields, expected {len(reader.fieldnames)} "
                                    f"({', '.join(reader.fieldnames)}); the row is cut or lacks "
                                    f"tabs: {fix}")
                yield lineno, row
    except UnicodeDecodeError as e:
        line, where = _bad_utf8_line(path), ""
        if line is None:
            line, where = lineno + 1, "near "
        raise DataError(f"{path}, {where}line {line}: not valid utf-8 ({e.reason}); {fix}") from e
    except (EOFError, gzip.BadGzipFile, OSError, csv.Error) as e:
        raise DataError(f"{path}, after line {lineno}: unreadable gzip/TSV "
                        f"({type(e).__name__}: {e}); the file is truncated or corrupt: {fix}") from e


def _bad_utf8_line(path: Path) -> int | None:
    """The exact line of the first invalid UTF-8 byte of a gzipped file (error path only)."""
    try:
        data = gzip.decompress(path.read_bytes())
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return data[: e.start].count(b"\n") + 1
    except Exception:
        return None
    return None


def read_friends(folder: Path) -> Show:
    show = Show("friends", "en", [])
    cur, turns = None, []
    for lineno, row in _friends_rows(folder):
        try:
            key = (int(row["season"]), int(row["episode"]), int(row["scene"]))
        except (KeyError, ValueError) as e:
            raise DataError(f"{folder}/friends.tsv.gz, line {lineno}: bad season/episode/scene "
                            f"({e}); the table needs columns text, speaker, season, episode, scene"
                            ) from e
        if key != cur:
            if cur:
                _add(show.chunks, f"episode_s{cur[0]:02d}e{cur[1]:02d}_chunk_{cur[2]}", turns)
            cur, turns = key, []
        speaker = row["speaker"].strip()
        if speaker == "Scene Directions":
            show.dropped["stage direction"] += 1
            continue
        turns.append(Turn(FRIENDS_NAMES.get(speaker, speaker) or GROUP, row["text"].strip()))
    if cur:
        _add(show.chunks, f"episode_s{cur[0]:02d}e{cur[1]:02d}_chunk_{cur[2]}", turns)
    return show


# --------------------------------------------------------------------------------------------
# The Big Bang Theory (TBBTCorpus raw_corpus)

_SPEAKER_LINE = re.compile(r"^([^:()]{1,40}?)\s*(?:\([^)]*\))?\s*:(.*)$")


def read_bigbang(folder: Path) -> Show:
    show = Show("bigbang", "en", [])
    files = sorted(require_path(folder / "raw_corpus", "bigbang").glob("*_*.txt"))
    if not files:
        raise DataError(f"bigbang: no <season>_<episode>.txt files in {folder / 'raw_corpus'}")
    stray = [p for p in files if not re.fullmatch(r"\d+_\d+", p.stem)]
    if stray:
        raise DataError(f"{stray[0]}: not a <season>_<episode>.txt episode file (e.g. 1_1.txt); "
                        f"move it (and {len(stray) - 1} other(s)) out of {folder / 'raw_corpus'}"
                        if len(stray) > 1 else
                        f"{stray[0]}: not a <season>_<episode>.txt episode file (e.g. 1_1.txt); "
                        f"move it out of {folder / 'raw_corpus'}")
    files.sort(key=lambda p: tuple(int(x) for x in p.stem.split("_")))
    for path in files:
        season, episode = (int(x) for x in path.stem.split("_"))
        ep, n, turns = f"s{season:02d}e{episode:02d}", 0, []
        for line in _read_text(path).splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("Scene:"):
                _add(show.chunks, f"episode_{ep}_chunk_{n}", turns)
                n, turns = n + 1, []
                show.dropped["scene header"] += 1
                continue
            m = _SPEAKER_LINE.match(line)
            if not m or m.group(1).startswith("Like this"):
                show.dropped["stage direction or boilerplate"] += 1
                continue
            turns.append(Turn(m.group(1).strip(), strip_parentheticals(m.group(2))))
        _add(show.chunks, f"episode_{ep}_chunk_{n}", turns)
    return show


# --------------------------------------------------------------------------------------------
# Modern Family (PDF-extracted season scripts, TomR2022)

_MF_EPISODE = re.compile(r"^(?:Modern Family\s+)?(\d+)x(\d+)\b(?!\s+page)\s*:?\s*\S")
_MF_FOOTER = re.compile(r"^Modern Family\b.*?(?:page|Season\s*\d+\.?$)|^\d{1,3}$", re.I)
_MF_SPEAKER = re.compile(r"^([A-Z][\w.'’ -]{0,30}?)\s*:\s*(.*)$")


def read_modernfamily(folder: Path) -> Show:
    """Chunks are blocks between blank lines (PDF columns interleave scenes, see SOURCE.md);
    where every line is followed by a blank line (parts of season 3), one-line blocks merge."""
    show = Show("modernfamily", "en", [])
    files = sorted(folder.glob("MFs*.txt"))
    if not files:
        require_path(folder / "MFs1.txt", "modernfamily")
    episodes = set()
    for path in files:
        ep, n, turns, labelled = None, 0, [], Counter()
        unlabelled_eps = Counter()
        for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
            line = line.strip()
            m = _MF_EPISODE.match(line)
            if m:
                _add(show.chunks, f"episode_{ep}_chunk_{n}", turns)
                ep, n, turns = f"s{int(m.group(1)):02d}e{int(m.group(2)):02d}", 0, []
                continue
            if not line:  # a block boundary; lone one-line blocks (S3 layout) are merged
                if len(turns) >= 2 and turns[-1].text:  # "Name:" then blank: text follows
                    _add(show.chunks, f"episode_{ep}_chunk_{n}", turns)
                    n, turns = n + 1, []
                continue
            if _MF_FOOTER.match(line) or line.startswith("["):
                show.dropped["page footer or note"] += 1
                continue
            m = _MF_SPEAKER.match(line)
            if m and ep is not None:
                turns.append(Turn(m.group(1).strip(), strip_parentheticals(m.group(2))))
                labelled[ep] += 1
            elif turns:  # a wrapped line: continue the previous utterance
                turns[-1] = Turn(turns[-1].speaker, f"{turns[-1].text} {line}".strip())
            else:
                show.dropped["text without speaker"] += 1
                unlabelled_eps[ep] += 1
        _add(show.chunks, f"episode_{ep}_chunk_{n}", turns)
        episodes |= {e for e, k in labelled.items() if k >= 50}
        bad = sorted(e for e in unlabelled_eps if labelled[e] < 50 and e)
        if bad:
            show.notes.append(f"{path.name}: {len(bad)} episodes without speaker labels "
                              f"({bad[0]}..{bad[-1]}), unusable")
    show.notes.insert(0, f"{len(episodes)} episodes carry speaker labels")
    return show


# --------------------------------------------------------------------------------------------
# 武林外传 My Own Swordsman (forum-reposted script, GB18030)

SWORDSMAN_ALIASES = {
    "掌柜": "佟湘玉", "掌柜的": "佟湘玉", "佟": "佟湘玉", "湘玉": "佟湘玉", "佟掌柜": "佟湘玉",
    "老白": "白展堂", "白": "白展堂", "展堂": "白展堂",
    "秀才": "吕秀才", "吕": "吕秀才", "吕轻侯": "吕秀才",
    "小郭": "郭芙蓉", "郭": "郭芙蓉", "芙蓉": "郭芙蓉",
    "大嘴": "李大嘴", "嘴": "李大嘴", "李": "李大嘴",
    "小贝": "莫小贝", "贝": "莫小贝", "莫": "莫小贝",
    "小六": "燕小六", "六": "燕小六", "燕": "燕小六",
    "无双": "祝无双", "双": "祝无双", "祝": "祝无双",
    "老邢": "邢捕头", "邢": "邢捕头", "刑捕头": "邢捕头",
    "包大人": "包大仁", "包": "包大仁", "蕙兰": "杨蕙兰", "杨": "杨蕙兰",
    "众": "众人", "大家": "众人",
    "吕轻候": "吕秀才", "邢育森": "邢捕头", "姬": "姬无命", "赛": "赛掌柜",
}
_ZH_EPISODE = re.compile(r"^第[一二三四五六七八九十百零〇\d]+回")
_ZH_SCENE = re.compile(r"^[（(【\[〔].*[）)】\]〕][日夜]?$|^-{5,}")
_ZH_SPEAKER = re.compile(r"^([^：:（(【\[〔\s]{1,8})\s*(?:[（(][^）)]*[）)])?\s*[：:](.*)$")
_ZH_NOISE = re.compile(r"删除回复|引用回复|发表于|^查看博客$|^生疏土著$|^坛主$")
_ZH_SPLIT = re.compile(r"[、，,/和与]")


def _zh_speaker(label: str, aliases: dict) -> str:
    parts = [p for p in _ZH_SPLIT.split(label) if p]
    if len(parts) > 1:
        return GROUP
    return aliases.get(label, label)


def read_swordsman(folder: Path) -> Show:
    show = Show("swordsman", "zh", [])
    files = sorted(folder.glob("*.gb18030.txt"))
    if not files:
        require_path(folder / "wulin_script_1.gb18030.txt", "swordsman")
    ep, n, turns = 0, 0, []
    for path in files:
        for line in _read_text(path, "gb18030").splitlines():
            line = line.strip()
            if not line:
                continue
            if _ZH_NOISE.search(line):
                show.dropped["forum noise"] += 1
                continue
            if _ZH_EPISODE.match(line):
                _add(show.chunks, f"episode_{ep}_chunk_{n}", turns)
                ep, n, turns = ep + 1, 0, []
                show.dropped["episode header"] += 1
                continue
            if _ZH_SCENE.match(line):
                _add(show.chunks, f"episode_{ep}_chunk_{n}", turns)
                n, turns = n + 1, []
                show.dropped["stage or location line"] += 1
                continue
            m = _ZH_SPEAKER.match(line)
            if not m:
                show.dropped["stage direction or noise"] += 1
                continue
            turns.append(Turn(_zh_speaker(m.group(1), SWORDSMAN_ALIASES),
                              strip_parentheticals(m.group(2))))
    _add(show.chunks, f"episode_{ep}_chunk_{n}", turns)
    return show


# --------------------------------------------------------------------------------------------
# 甄嬛传 Empresses in the Palace (DyKGChat corpus, Traditional Chinese)

def _palace_aliases(path: Path) -> dict:
    aliases = {}
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 3:
            raise DataError(f"{path}, line {lineno}: expected 'alias | count | canonical', got "
                            f"{line!r}")
        alias, _, canon = parts
        names = canon.split()
        aliases[alias] = alias if not names else (names[0] if len(names) == 1 else GROUP)
    aliases.update({"皇上": "皇帝", "皇帝，": "皇帝"})
    return aliases


_PALACE_NOTES = re.compile(r"\[\d+\]|【[^】]*】")


def read_palace(folder: Path) -> Show:
    show = Show("palace", "zh", [])
    aliases = _palace_aliases(require_path(folder / "people_mapping.txt", "palace"))
    path = require_path(folder / "corpus.txt", "palace")
    cur, turns = None, []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|", 3)]
        if len(parts) != 4:
            raise DataError(f"{path}, line {lineno}: expected 'scene | speaker | action | text' "
                            f"(4 fields), got {len(parts)}")
        scene, speaker, _, text = parts
        if scene != cur:
            _add(show.chunks, f"episode_0_chunk_{cur}", turns)
            cur, turns = scene, []
        if speaker == "旁白":
            show.dropped["narrator"] += 1
            continue
        text = _PALACE_NOTES.sub("", text)  # footnote marks [4] and editors' notes 【...】
        turns.append(Turn(aliases.get(speaker, speaker), strip_parentheticals(text)))
    _add(show.chunks, f"episode_0_chunk_{cur}", turns)
    return show


# --------------------------------------------------------------------------------------------
# real-person chats: the chitchat-dataset package (MIT)

CHAT_NAMES = ["Alex", "Blake", "Casey", "Dana", "Eli", "Frankie", "Gray", "Harper", "Indy",
              "Jordan", "Kai", "Logan", "Morgan", "Noa", "Oakley", "Parker", "Quinn", "Riley",
              "Sage", "Taylor", "Uma", "Val", "Wren", "Xen", "Yael", "Zion", "Arden", "Bellamy",
              "Charlie", "Devon", "Emery", "Finley", "Hayden", "Jesse", "Kendall", "Lane"]


def chitchat_path(folder: Path | None = None) -> Path:
    if folder is not None and (folder / "dataset.json").exists():
        return folder / "dataset.json"
    try:
        import chitchat_dataset
    except ImportError as e:
        raise DataError("chitchat: install the chitchat-dataset package (pip install "
                        "chitchat-dataset) or put its dataset.json under ROOT/chitchat/") from e
    return Path(chitchat_dataset._PATH)


def read_chitchat(folder: Path | None = None, session_gap_hours: float = 3.0) -> Show:
    """Each conversation is split into sessions at gaps > ``session_gap_hours``; consecutive
    messages of one sender are merged (joined by spaces) into one utterance. Senders are
    anonymous ids; the most active ones (by sessions) get readable pseudonyms."""
    path = chitchat_path(folder)
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg}); reinstall it: pip "
                        "install --force-reinstall chitchat-dataset") from e
    try:
        return _chitchat_show(data, session_gap_hours)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{path}: not the chitchat-dataset layout ({type(e).__name__}: {e}); "
                        "expected {id: {messages: [[{sender, text, timestamp}]]}}") from e


def _chitchat_show(data: dict, session_gap_hours: float) -> Show:
    show = Show("chitchat", "en", [])
    gap = timedelta(hours=session_gap_hours)
    sessions = []  # (chunk id, [(sender, text), ...]); Turns are made once, after renaming
    for key, conv in data.items():
        n, turns, last, who, texts = 0, [], None, None, []
        for grp in conv["messages"]:
            for m in grp:
                t = datetime.fromisoformat(m["timestamp"][:19])  # all UTC ("...Z")
                if last is not None and t - last > gap:  # a new session
                    turns.append((who, " ".join(texts)))
                    sessions.append((f"episode_{key}_chunk_{n}", turns))
                    n, turns, who = n + 1, [], None
                last = t
                if m["sender"] != who:
                    if who is not None:
                        turns.append((who, " ".join(texts)))
                    who, texts = m["sender"], []
                texts.append(m["text"].strip())
        if who is not None:
            turns.append((who, " ".join(texts)))
        if turns:
            sessions.append((f"episode_{key}_chunk_{n}", turns))
    active = Counter(s for _, turns in sessions for s in {s for s, _ in turns})
    ranked = sorted(active, key=lambda s: (-active[s], s))  # ties by id: same in every process
    names = {s: CHAT_NAMES[i] if i < len(CHAT_NAMES) else f"user-{s[:8]}"
             for i, s in enumerate(ranked)}
    show.chunks = [Chunk(cid, [Turn(names[s], x) for s, x in turns]) for cid, turns in sessions]
    show.notes.append(f"{len(data)} conversations, {len(show.chunks)} sessions, {len(names)} "
                      f"senders (pseudonyms by number of sessions: {CHAT_NAMES[0]} is the most "
                      "active)")
    return show
