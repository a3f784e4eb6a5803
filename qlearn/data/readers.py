"""Readers: one function per source, each turning raw files into a :class:`Show`.

A show is a list of chunks (a scene, or one chat session) of ``Turn(speaker, text)``, with speaker
names normalized the way MQDialog names them. Every line a reader does not turn into an utterance
is counted by reason in ``Show.dropped`` (nothing is lost silently).
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from .types import Turn

# a line spoken by several named people at once: a third speaker, never a querier
GROUP = "(several)"


class DataError(ValueError):
    """Bad or missing input data; the message names the file/line/option and the fix."""


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
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not valid {encoding} (byte {e.start}); this file "
                        f"must be {encoding}: re-download it with `qlearn data download`") from e


def _need(path: Path, source: str) -> Path:
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
        with gzip.open(tsv, "rt", encoding="utf-8", newline="") as f:
            for lineno, row in enumerate(csv.DictReader(f, delimiter="\t"), start=2):
                yield lineno, row
        return
    import warnings

    import pandas as pd
    import rdata

    with warnings.catch_warnings():  # "Missing constructor for R class tbl_df": harmless
        warnings.simplefilter("ignore")
        frame = rdata.read_rda(str(_need(folder / "friends.rda", "friends")))["friends"]
    for lineno, row in enumerate(frame.to_dict("records"), start=1):
        yield lineno, {k: ("" if pd.isna(v) else str(v)) for k, v in row.items()}


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
    files = sorted(_need(folder / "raw_corpus", "bigbang").glob("*_*.txt"),
                   key=lambda p: tuple(int(x) for x in p.stem.split("_")))
    if not files:
        raise DataError(f"bigbang: no <season>_<episode>.txt files in {folder / 'raw_corpus'}")
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
        _need(folder / "MFs1.txt", "modernfamily")
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
        _need(folder / "wulin_script_1.gb18030.txt", "swordsman")
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
    aliases = _palace_aliases(_need(folder / "people_mapping.txt", "palace"))
    path = _need(folder / "corpus.txt", "palace")
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
    data = json.loads(_read_text(path))
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


# --------------------------------------------------------------------------------------------
# registry

SOURCES = {  # name -> (folder under the data root, reader)
    "friends": ("friends_emorynlp", read_friends),
    "bigbang": ("bigbang_tbbtcorpus", read_bigbang),
    "modernfamily": ("modernfamily_tomr2022", read_modernfamily),
    "swordsman": ("swordsman_wulin", read_swordsman),
    "palace": ("palace_dykgchat", read_palace),
    "chitchat": ("chitchat", read_chitchat),
}


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    root = root or os.environ.get("QLEARN_DATA_ROOT")
    return Path(root).expanduser() if root else None


def source_folder(source: str, root: str | os.PathLike | None = None) -> Path:
    if source not in SOURCES:
        raise DataError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    base = data_root(root)
    if base is None:
        if source == "chitchat":
            return Path("chitchat")
        raise DataError(f"{source}: no data root. Pass --root DIR (root=...) or set "
                        f"QLEARN_DATA_ROOT; `qlearn data download {source} --root DIR` fetches "
                        f"the files")
    sub = base / SOURCES[source][0]
    return sub if sub.is_dir() or source == "chitchat" else _need(sub, source)


@lru_cache(maxsize=16)
def read_cached(source: str, folder: str, gap: float) -> Show:
    reader = SOURCES[source][1]
    return reader(Path(folder), gap) if source == "chitchat" else reader(Path(folder))


def read_show(source: str, root: str | os.PathLike | None = None,
              session_gap_hours: float = 3.0) -> Show:
    """Parse one source (cached per process: build several responders for the price of one)."""
    folder = source_folder(source, root)
    return read_cached(source, str(folder.resolve()), session_gap_hours)
