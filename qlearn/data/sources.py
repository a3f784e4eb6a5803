"""One record per data source: its reader, folder, language, the paper's thresholds, responders and
number of clusters, and its download pin. Every part of qlearn that depends on the source (reading,
building, clustering, downloading, the command line) reads it from :data:`SOURCES`, so adding a
source is one :class:`Source` entry:

    >>> from qlearn.data.sources import SOURCES, Source
    >>> SOURCES["mine"] = Source("mine", read_mine, folder="mine", lang="en", responders={"Ann": 5})
    >>> build_dataset("mine", "Ann", root=DIR)  # reads DIR/mine/ with read_mine
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..errors import DataError
from .readers import (Show, read_bigbang, read_chitchat, read_friends, read_modernfamily,
                      read_palace, read_swordsman)


@dataclass(frozen=True)
class Pin:
    """Where ``qlearn data download`` fetches a source: a GitHub repo at a commit, and its files.

    ``files``: ``(path in the repo, path under ROOT/<folder>)`` pairs; or, for a folder of files,
    ``pattern`` (the remote path with ``{name}``) and ``glob`` (the local files it names)."""

    repo: str
    commit: str
    files: tuple[tuple[str, str], ...] = ()
    pattern: str | None = None
    glob: str | None = None


@dataclass(frozen=True)
class Source:
    """A data source: how to read it and the paper's defaults for it (see the module doc)."""

    name: str
    reader: Callable[..., Show]  # reader(folder) -> Show; chats: reader(folder, session_gap_hours)
    folder: str  # under the data root
    lang: str  # "en" or "zh"
    responders: Mapping[str | None, int]  # MQDialog's responders -> their number of clusters k
    k: int = 5  # the number of clusters of any other responder
    min_utterances: int = 50  # a candidate querier speaks at least this often (paper: tau_utt)
    min_segments: int = 20  # a querier keeps at least this many two-person segments
    chat: bool = False  # chat sessions: responder optional, only their own chats, reader gets the gap
    pin: Pin | None = None  # None: the files come with a pip package (no root needed, no manifest)
    install: str = ""  # how to get the files when there is no pin
    derived: Mapping[str, tuple[str, int]] = field(default_factory=dict)  # made from the pin's files: path -> (sha256, size)
    shareable: bool = False  # its text may be committed (MIT); the TV and drama scripts are copyrighted


SOURCES: dict[str, Source] = {s.name: s for s in (
    # paper: tau_utt = 70 Friends/TBBT, 40 Modern Family, 50 Chinese dramas; chats: > 200 messages
    Source("friends", read_friends, "friends_emorynlp", "en", {"Rachel": 10, "Ross": 10},
           min_utterances=70,
           pin=Pin("EmilHvitfeldt/friends", "f2946cf8b594258da24c93265ed763d6edaef738",
                   (("data/friends.rda", "friends.rda"),)),
           derived={"friends.tsv.gz": (
               "eaebcb1043074cb0d9d2a3a5f5153ca2c3b072d32b7b4e937d43a0855c1320dd", 1681474)}),
    Source("bigbang", read_bigbang, "bigbang_tbbtcorpus", "en", {"Sheldon": 10, "Leonard": 10},
           min_utterances=70,
           pin=Pin("skashyap7/TBBTCorpus", "493ac6853a0cd0cb3a79f27b97bc814d653448cd",
                   pattern="preprocessing/raw_corpus/{name}", glob="raw_corpus/*.txt")),
    Source("modernfamily", read_modernfamily, "modernfamily_tomr2022", "en",
           {"Claire": 5, "Phil": 5}, min_utterances=40,
           pin=Pin("TomR2022/Text-Mining-Group-Project", "93af3e6cf8adf0350e9483e9ec2092755c71a58a",
                   tuple((f"Data/Transcripts/MFs{i}.txt", f"MFs{i}.txt") for i in (1, 2, 3, 5)))),
    Source("swordsman", read_swordsman, "swordsman_wulin", "zh",
           {"佟湘玉": 10, "白展堂": 10, "吕秀才": 5},
           pin=Pin("gaspolymerase/wulin-dialogue-skill", "e55c637be8a94e21a47c11e0f7618bad8eec15ae",
                   tuple((f"武林外传全剧本/武林外传全剧本{i}.txt", f"wulin_script_{i}.gb18030.txt")
                         for i in (1, 2, 3)))),
    Source("palace", read_palace, "palace_dykgchat", "zh", {"甄嬛": 5, "皇帝": 5},
           pin=Pin("Pascalson/DyKGChat", "1a6884815bbc4e3c6c3acd09f16b5a2bfe353932",
                   (("data/hgzhz/raw_data/corpus.txt", "corpus.txt"),
                    ("data/hgzhz/raw_data/people_mapping.txt", "people_mapping.txt")))),
    # the chat pipeline has no minimum-segments filter; its one responder: the most active sender
    Source("chitchat", read_chitchat, "chitchat", "en", {None: 10}, k=10, min_utterances=200,
           min_segments=0, chat=True, shareable=True,
           install="ships as a PyPI package: pip install chitchat-dataset (nothing to download)"),
)}


def get_source(name: str) -> Source:
    """The record of source ``name``; a one-line :class:`DataError` naming the valid ones."""
    if name not in SOURCES:
        raise DataError(f"unknown source {name!r}; choose one of {', '.join(SOURCES)}")
    return SOURCES[name]


def downloadable() -> list[str]:
    """The names of the sources that ``qlearn data download`` fetches (those with a pin)."""
    return [s.name for s in SOURCES.values() if s.pin is not None]


def all_responders() -> list[tuple[str, str | None]]:
    """Every MQDialog responder of the five shows plus one chitchat responder."""
    return [(s.name, r) for s in SOURCES.values() for r in s.responders]


__all__ = ["Pin", "Source", "SOURCES", "all_responders", "downloadable", "get_source"]
