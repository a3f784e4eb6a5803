"""The prompting baselines of the paper, built on the same turn template as the trained models.

* **Zero-shot** — the base model, the dialogue rendered with qlearn's turn template, nothing else.
* **RPG** — a responder profile (``qlearn/resources/profiles/<responder>.md``, written by us) as a system turn.
* **Few-shot** — the 5 training dialogues most similar to the window (MiniLM cosine similarity of
  the dialogue text) shown as examples in a system turn.
* **QCG** — a profile of the *querier*, built from the training data (how often and how long they
  talk to the responder, the words that set them apart from the other queriers), as a system turn.

The trained systems (FT, Ours, the ablations, per-querier LoRA) use the plain Zero-shot prompt on
their own weights: ``model_replies``. Every system answers exactly the same windows.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from ..generation import generate_replies
from ..template import render_dialogue, turn_format
from ..resources import resource
from .metrics import guess_lang

PROMPT_BASELINES = ("Zero-shot", "RPG", "Few-shot", "QCG")
PROFILES_DIR = resource("profiles")  # package data (importlib.resources), so it works from a wheel
SYSTEM = "system"  # the speaker name of the instruction turn (ChatML/Llama-3 role "system")

TEXT = {
    "en": {"few_shot": "You are {responder}. Here are some past conversations of {responder}:\n\n"
                       "{examples}\n\nReply to the next message as {responder} would.",
           "qcg": "You are {responder}, talking with {querier}. About {querier}: {profile}\n"
                  "Reply as {responder} would reply to {querier}.",
           "profile": "{querier} talks with {responder} in {n} of the {total} training "
                      "conversations. {querier}'s messages to {responder} are {length} "
                      "({words:.0f} words on average){terms}. {responder}'s replies to {querier} "
                      "average {reply_words:.0f} words.",
           "terms": " and often mention: {terms}", "short": "short", "long": "long"},
    "zh": {"few_shot": "你是{responder}。下面是{responder}以前的几段对话：\n\n{examples}\n\n"
                       "请像{responder}那样回复下一句话。",
           "qcg": "你是{responder}，正在和{querier}说话。关于{querier}：{profile}\n"
                  "请像{responder}回复{querier}那样说话。",
           "profile": "在{total}段训练对话中，{querier}和{responder}说话的有{n}段。{querier}"
                      "对{responder}说的话{length}（平均{words:.0f}个字）{terms}。{responder}"
                      "回复{querier}平均{reply_words:.0f}个字。",
           "terms": "，常说到：{terms}", "short": "较短", "long": "较长"},
}


def _plain(turns) -> str:
    return "\n".join(f"{s}: {t}" for s, t in turns)


def _size(text: str, lang: str) -> int:
    return len([c for c in text if not c.isspace()]) if lang == "zh" else len(text.split())


def load_profile(responder: str, profiles_dir: str | Path | None = None) -> str:
    """The responder's profile text; the generic one (``_generic.md``) when there is none."""
    folder = Path(profiles_dir) if profiles_dir else PROFILES_DIR
    for name in (f"{responder}.md", "_generic.md"):
        path = folder / name
        if path.is_file():
            return path.read_text(encoding="utf-8").strip().replace("{responder}", responder)
    raise FileNotFoundError(f"no profile for {responder!r} and no _generic.md in {folder}: write "
                            f"{folder / (responder + '.md')} (a few sentences in your own words)")


def querier_profiles(train: Sequence, n_terms: int = 8) -> dict[str, str]:
    """QCG: one profile per querier, from that querier's training windows only."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not train:
        raise ValueError("QCG needs training windows to build querier profiles")
    lang = guess_lang(w.reply for w in train[:200])
    said, replies, count = defaultdict(list), defaultdict(list), defaultdict(int)
    for w in train:
        count[w.querier] += 1
        said[w.querier] += [t for s, t in w.turns if s == w.querier]
        replies[w.querier].append(w.reply)
    queriers = sorted(count)
    docs = [" ".join(said[q]) for q in queriers]
    if lang == "zh":
        docs = ["".join(c if "\u4e00" <= c <= "\u9fff" else " " for c in d) for d in docs]
        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 2), sublinear_tf=True)
    else:
        vec = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z']+\b",
                              sublinear_tf=True)
    try:
        tfidf, vocab = vec.fit_transform(docs).toarray(), vec.get_feature_names_out()
    except ValueError:  # nothing left after stop words
        tfidf, vocab = np.zeros((len(queriers), 0)), np.array([])
    all_words = np.mean([_size(t, lang) for q in queriers for t in said[q]] or [0])
    t = TEXT[lang]
    out = {}
    for i, q in enumerate(queriers):
        top = [vocab[j].strip() for j in np.argsort(-tfidf[i])[:n_terms] if tfidf[i, j] > 0]
        sep = "、" if lang == "zh" else ", "
        words = float(np.mean([_size(x, lang) for x in said[q]] or [0]))
        out[q] = t["profile"].format(
            querier=q, responder=train[0].responder, n=count[q], total=len(train),
            length=t["long"] if words > all_words else t["short"], words=words,
            terms=t["terms"].format(terms=sep.join(top)) if top else "",
            reply_words=float(np.mean([_size(x, lang) for x in replies[q]])))
    return out


class FewShotRetriever:
    """Finds the k training windows whose dialogue text is most similar (cosine).

    ``embedder=None``: the one that fits the language (``qlearn.cluster.fit_embedder``): MiniLM for
    English, character n-grams fitted on the training dialogues for Chinese.
    """

    def __init__(self, embedder=None, k: int = 5):
        self.embedder, self.k = embedder, k

    def fit(self, train: Sequence) -> "FewShotRetriever":
        if len(train) < self.k:
            raise ValueError(f"Few-shot needs at least k={self.k} training windows, got {len(train)}")
        from ..cluster import fit_embedder

        self.train_ = list(train)
        texts = [_plain(w.context) for w in self.train_]
        self.embedder = fit_embedder(texts, self.embedder)
        self.emb_ = self._embed(texts)
        return self

    def _embed(self, texts):
        return np.asarray(self.embedder.encode(texts, batch_size=64, normalize_embeddings=True,
                                               show_progress_bar=len(texts) > 256))

    def examples(self, windows: Sequence) -> list[list]:
        sims = self._embed([_plain(w.context) for w in windows]) @ self.emb_.T
        return [[self.train_[j] for j in np.argsort(-row)[:self.k]] for row in sims]


def build_prompts(system: str, tokenizer, windows: Sequence, train: Sequence | None = None,
                  embedder=None, profiles_dir: str | Path | None = None, k: int = 5) -> list[str]:
    """The prompt of a prompting baseline for every window (ending with the responder's header)."""
    if system not in PROMPT_BASELINES:
        raise ValueError(f"unknown prompting baseline {system!r}: use one of {PROMPT_BASELINES} "
                         "(FT, Ours and the ablations are trained: use model_replies)")
    fmt = turn_format(tokenizer)
    if system == "Zero-shot":
        systems = [None] * len(windows)
    elif system == "RPG":
        systems = [load_profile(w.responder, profiles_dir) for w in windows]
    else:
        if not train:
            raise ValueError(f"{system} needs the training windows (train=dataset.train)")
        lang = guess_lang(w.reply for w in list(train)[:200])
        if system == "Few-shot":
            shots = FewShotRetriever(embedder, k).fit(train).examples(windows)
            systems = [TEXT[lang]["few_shot"].format(
                responder=w.responder, examples="\n\n".join(_plain(e.turns) for e in ex))
                for w, ex in zip(windows, shots)]
        else:  # QCG
            profiles = querier_profiles(train)
            systems = [TEXT[lang]["qcg"].format(responder=w.responder, querier=w.querier,
                                                profile=profiles.get(w.querier, "-"))
                       for w in windows]
    return [(fmt.turn(SYSTEM, s) if s else "") + render_dialogue(fmt, w.context, w.responder)
            for w, s in zip(windows, systems)]


def model_replies(model, tokenizer, windows: Sequence, **generate_kwargs) -> list[str]:
    """Replies of a (trained or base) model to the plain turn-template prompt of every window."""
    fmt = turn_format(tokenizer)
    prompts = [render_dialogue(fmt, w.context, w.responder) for w in windows]
    return generate_replies(model, tokenizer, prompts, **generate_kwargs)


def baseline_replies(system: str, model, tokenizer, windows: Sequence, train: Sequence | None = None,
                     embedder=None, profiles_dir=None, **generate_kwargs) -> list[str]:
    """Generate a prompting baseline's replies for ``windows`` with the base ``model``."""
    prompts = build_prompts(system, tokenizer, windows, train, embedder, profiles_dir)
    return generate_replies(model, tokenizer, prompts, **generate_kwargs)
