"""Query clustering and its figures, with the real MiniLM encoder.

Synthetic windows: five topics we wrote ourselves, each asked by every querier, so the only thing
that can separate the clusters is what is asked (not who asks).
"""
import itertools
import random

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from qlearn.cluster import (SINGLE_QUERIER_WARNING, EmbeddingCache, QueryClusterer,
                            assign_clusters, cluster_report, default_k, k_selection,
                            report_markdown)
from qlearn.data.types import Turn, Window

TOPICS = {
    "food": ["Do you want to get pizza for dinner tonight?", "I'm starving, what should we cook?",
             "Is there any leftover pasta in the fridge?", "Let's order Thai food, I'm hungry.",
             "Did you eat all the cookies I baked?", "Can you make your lasagna for lunch?",
             "Which restaurant serves the best burgers?", "I bought fresh bread and cheese."],
    "weather": ["Is it going to rain tomorrow?", "It's freezing outside, did it snow last night?",
                "The forecast says a storm is coming this weekend.", "Why is it so hot and humid today?",
                "Should I bring an umbrella, the sky looks cloudy?", "The wind is blowing so hard.",
                "Did you hear thunder during the storm?", "It's sunny and warm, perfect beach weather."],
    "work": ["My boss wants the report on his desk by Monday.", "Did you get the promotion?",
             "I have a job interview tomorrow morning.", "The meeting with the client ran three hours.",
             "Are you asking your manager for a raise?", "I'm thinking of quitting my job.",
             "My coworker keeps taking credit for my work.", "How was your first day at the company?"],
    "physics": ["Can you explain quantum mechanics to me?", "What is the speed of light in a vacuum?",
                "How does gravity bend spacetime?", "Is string theory ever going to be tested?",
                "What happens to an electron in a magnetic field?", "Why do particles have mass?",
                "Explain the theory of relativity again.", "How do black holes emit radiation?"],
    "pets": ["Did you feed the dog this morning?", "My cat keeps scratching the sofa.",
             "Can we adopt a puppy from the shelter?", "The hamster escaped from its cage again.",
             "Who is taking the dog for a walk?", "Should we take the kitten to the vet?",
             "The parrot learned a new word.", "My goldfish is swimming upside down."],
}
QUERIERS = ["Ann", "Bob", "Cy"]


def make_windows(per_topic=12, seed=0, topics=TOPICS, queriers=QUERIERS, split="train"):
    """Windows whose query is two sentences of one topic; queriers rotate within every topic."""
    rng = random.Random(seed)
    windows, topic_ids = [], []
    for t, (name, sentences) in enumerate(topics.items()):
        for i, (a, b) in enumerate(rng.sample(list(itertools.combinations(sentences, 2)), per_topic)):
            q = queriers[i % len(queriers)]
            turns = [Turn("Zed", "Hey."), Turn(q, a), Turn(q, b), Turn("Zed", "Let me think.")]
            windows.append(Window(id=f"{name}-{i}-{seed}", turns=turns, responder="Zed", querier=q,
                                  role_pair_id=queriers.index(q) + 1, split=split))
            topic_ids.append(t)
    return windows, np.array(topic_ids)


@pytest.fixture(scope="module")
def fitted(embedder, tmp_path_factory):
    windows, topics = make_windows()
    qc = QueryClusterer(n_clusters=5, embedder=embedder,
                        cache_dir=tmp_path_factory.mktemp("emb")).fit(windows)
    return qc, windows, topics


def test_synthetic_topics_are_recovered(fitted):
    qc, windows, topics = fitted
    assert adjusted_rand_score(topics, qc.labels_) >= 0.8
    emb = qc.transform(windows)
    assert emb.shape == (len(windows), 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(qc.cluster_centers_, axis=1), 1, atol=1e-5)
    # the querier is not what was clustered: every cluster mixes all three
    report = cluster_report(windows, qc)
    assert (report["n_queriers"] == 3).all() and (report["warning"] == "").all()


def test_predict_reproduces_labels_and_assigns_new_queries(fitted):
    qc, windows, topics = fitted
    np.testing.assert_array_equal(qc.predict(windows), qc.labels_)
    # unseen queries on a known topic land in that topic's (majority) cluster
    food = np.bincount(qc.labels_[topics == 0]).argmax()
    pets = np.bincount(qc.labels_[topics == 4]).argmax()
    new = ["We should grill some steaks and eat outside tonight.", "The puppy chewed my shoes."]
    assert list(qc.predict(new)) == [food, pets]


def test_embedding_cache_is_hit_on_second_fit(embedder, tmp_path):
    windows, _ = make_windows(per_topic=4, seed=1)
    first = QueryClusterer(n_clusters=3, embedder=embedder, cache_dir=tmp_path).fit(windows)
    n_unique = len({w.query for w in windows})
    assert (first.embed_hits_, first.embed_misses_) == (0, n_unique)
    # a new estimator naming the same model by its short name: all hits, encoder never loaded
    second = QueryClusterer(n_clusters=3, embedder="minilm", cache_dir=tmp_path).fit(windows)
    assert (second.embed_hits_, second.embed_misses_) == (n_unique, 0)
    assert second._embedding_cache._encoder is None
    np.testing.assert_array_equal(first.labels_, second.labels_)
    # the key includes the model: another embedder does not see these vectors
    assert EmbeddingCache("other/model", tmp_path).path != EmbeddingCache("minilm", tmp_path).path
    # the cache stores digests and vectors, never the text
    assert b"Monday" not in EmbeddingCache("minilm", tmp_path).path.read_bytes()


def test_cache_keeps_every_key(embedder, tmp_path):
    """Digests ending in a zero byte once lost it on disk (fixed-width bytes) and always missed."""
    import hashlib

    texts = [t for t in (f"query number {i}" for i in range(3000))
             if hashlib.sha1(t.encode()).digest()[-1] == 0][:3] + ["plain text"]
    EmbeddingCache(embedder, tmp_path).embed(texts)
    again = EmbeddingCache("minilm", tmp_path)
    again.embed(texts)
    assert (again.hits, again.misses) == (len(texts), 0)


def test_k_selection_and_single_querier_warning(fitted):
    qc, windows, _ = fitted
    table = k_selection(qc, windows, ks=range(2, 9))
    assert list(table["k"]) == list(range(2, 9))
    assert table["silhouette"].between(-1, 1).all() and table["mix"].between(0, 1).all()
    assert table.loc[table["silhouette"].idxmax(), "k"] == 5  # the five written topics
    # a sixth topic asked by one querier only: its cluster gets the warning
    extra, _ = make_windows(per_topic=10, seed=2, queriers=["Dee"], topics={
        "music": ["Did you hear the new album by that band?", "I'm learning to play the guitar.",
                  "The concert was so loud, the drummer was amazing.", "Can you sing the chorus?",
                  "Which song should I play on the piano?", "I bought tickets to the opera."]})
    all_windows = windows + extra
    qc6 = QueryClusterer(n_clusters=6, embedder=qc.embedder, cache_dir=qc.cache_dir).fit(all_windows)
    report = cluster_report(all_windows, qc6)
    lonely = report[report["n_queriers"] == 1]
    assert len(lonely) == 1 and lonely.iloc[0]["queriers"] == {"Dee": 10}
    assert lonely.iloc[0]["warning"] == SINGLE_QUERIER_WARNING and lonely.iloc[0]["mix"] == 0
    assert set(lonely.iloc[0]["top_terms"]) & {"concert", "guitar", "song", "piano", "album"}
    assert len(lonely.iloc[0]["examples"]) == 3
    md = report_markdown(report, table)
    assert "## Choosing k" in md and SINGLE_QUERIER_WARNING in md and "Dee 10" in md


def test_assign_clusters_fits_train_and_predicts_val_test(fitted):
    from types import SimpleNamespace

    qc, _, _ = fitted
    train, _ = make_windows(seed=3)
    test, topics = make_windows(per_topic=3, seed=4, split="test")
    ds = SimpleNamespace(source="synthetic", responder="Zed", train=train, val=[], test=test)
    fitted_qc = assign_clusters(ds, 5, QueryClusterer(embedder=qc.embedder, cache_dir=qc.cache_dir))
    assert [w.cluster_id for w in train] == list(fitted_qc.labels_)
    assert all(isinstance(w.cluster_id, int) for w in test)
    assert adjusted_rand_score(topics, [w.cluster_id for w in test]) >= 0.8
    assert train[0].to_mqdialog()["cluster_id"] == train[0].cluster_id
    assert default_k("Sheldon") == 10 and default_k("Penny") == 5 and default_k("x", "chitchat") == 10


def test_bad_settings_are_named(embedder, tmp_path):
    windows, _ = make_windows(per_topic=1)
    with pytest.raises(ValueError, match="n_clusters=10 clusters from 5 windows"):
        QueryClusterer(n_clusters=10, embedder=embedder, cache_dir=tmp_path).fit(windows)
    with pytest.raises(ValueError, match="query_text='reply'"):
        QueryClusterer(n_clusters=2, embedder=embedder, query_text="reply").fit(windows)


def test_figures_are_written_and_not_empty(fitted, tmp_path):
    from qlearn import viz

    qc, windows, _ = fitted
    xy = viz.umap_2d(qc.embeddings_, random_state=0)
    assert xy.shape == (len(windows), 2) and np.isfinite(xy).all()
    np.testing.assert_allclose(viz.umap_2d(qc.embeddings_, random_state=0), xy)  # seeded
    queriers = [w.querier for w in windows]
    report = cluster_report(windows, qc)
    figs = {"by_cluster_and_querier": viz.plot_queries(xy, qc.labels_, queriers),
            "per_cluster": viz.plot_cluster_grid(xy, qc.labels_, queriers),
            "k": viz.plot_k_selection(k_selection(qc, windows, ks=range(2, 7)), chosen=5),
            "mix": viz.plot_cluster_mix(report)}
    left, right = figs["by_cluster_and_querier"].axes[:2]
    assert sum(len(c.get_offsets()) for c in left.collections) == len(windows)
    assert {t.get_text() for t in right.get_legend().get_texts()} == set(QUERIERS)
    assert len([a for a in figs["per_cluster"].axes if a.axison]) == 5
    for name, fig in figs.items():
        path = viz.save_png(fig, tmp_path / f"{name}.png")
        assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 10_000, name


def test_real_friends_windows_cluster_and_round_trip(embedder, data_root, tmp_path):
    """Real transcripts (a subsample, for speed): fit, predict, report the mix, save, reload."""
    from dataclasses import replace

    from qlearn.cluster import save_clustered
    from qlearn.data import build_dataset, load_mqdialog

    full = build_dataset("friends", "Rachel", root=data_root)
    ds = replace(full, train=full.train[::20], val=full.val[::20], test=full.test[::20])
    qc = assign_clusters(ds, 10, QueryClusterer(embedder=embedder, cache_dir=tmp_path / "emb"))
    assert sorted(set(qc.labels_)) == list(range(10))
    report = cluster_report(ds.train, qc)
    assert report["size"].sum() == len(ds.train)
    for row in report.itertuples():
        assert sum(row.queriers.values()) == row.size and set(row.queriers) <= set(ds.queriers)
        assert 0 <= row.mix <= 1 and (row.warning == SINGLE_QUERIER_WARNING) == (row.n_queriers == 1)
    assert report["n_queriers"].max() > 1  # real clusters mix queriers
    back = load_mqdialog(save_clustered(ds, tmp_path / "rachel_clustered"))
    for split in ("train", "val", "test"):
        ids = {w.id: w.cluster_id for w in getattr(ds, split)}
        assert {w.id: w.cluster_id for w in getattr(back, split)} == ids
        assert None not in ids.values()


# ------------------------------------------------------------- embedders that fit the language
ZH_TOPICS = {  # written for this test
    "food": ["今天晚上吃什么饭", "我饿了想吃面条", "厨房里还有包子吗", "这个菜太咸了"],
    "money": ["这个月的工钱什么时候发", "你又欠了我三两银子", "客栈的账本对不上", "银子都花光了"],
    "weather": ["外面下大雨了", "明天会不会下雪", "今天太阳好大好热", "刮风了快关窗户"],
}


def test_auto_embedder_follows_the_script():
    from qlearn.cluster import CHAR_NGRAM, MINILM, resolve_embedder_name

    assert resolve_embedder_name("auto", ["Where were you last night?"] * 3) == MINILM
    assert resolve_embedder_name("auto", ["你昨天晚上去哪儿了？"] * 3) == CHAR_NGRAM
    assert resolve_embedder_name("minilm", ["你好"]) == MINILM


def test_char_ngram_embedder_is_deterministic_and_groups_shared_characters():
    from qlearn.cluster import CharNgramEmbedder

    texts = [t for ts in ZH_TOPICS.values() for t in ts] * 3
    with pytest.raises(ValueError, match="not fitted"):
        CharNgramEmbedder().encode(texts)
    a, b = CharNgramEmbedder().fit(texts), CharNgramEmbedder().fit(texts)
    ea, eb = a.encode(texts), b.encode(["今天晚上吃什么饭", "外面下大雨了", "外面下大雪了"])
    np.testing.assert_allclose(a.encode(texts[:3]), b.encode(texts[:3]), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ea, axis=1), 1, atol=1e-5)
    assert eb[1] @ eb[2] > eb[0] @ eb[1]  # shared characters, higher cosine
    cov = a.coverage(["今天吃饭", "火星人"])  # 火星人 never occurs in the training texts
    assert cov["unit"] == "characters" and cov["total"] == 7 and cov["unknown"] == 3


def test_chinese_queries_are_read_not_unk(embedder, data_root, tmp_path):
    """佟湘玉 (swordsman): MiniLM turns most query tokens into [UNK]; the default Chinese embedder
    knows > 95% of the characters, reports it, and its nearest neighbours share words far more
    often than MiniLM's (the number is in docs/protocol.md)."""
    import logging
    from dataclasses import replace

    import jieba

    from qlearn.cluster import CharNgramEmbedder, embedding_coverage
    from qlearn.data import build_dataset

    jieba.setLogLevel(logging.WARNING)
    full = build_dataset("swordsman", "佟湘玉", root=data_root)
    assert full.lang == "zh"
    queries = [w.query for w in full.train]
    minilm = embedding_coverage(embedder, queries)
    assert minilm["unit"] == "tokens" and minilm["unknown_rate"] > 0.5  # the old default

    ds = replace(full, val=full.val[::10], test=full.test[::10])
    qc = assign_clusters(ds)  # what cluster_and_report / `qlearn cluster` run (without the figures)
    assert isinstance(qc.encoder_, CharNgramEmbedder)
    report = cluster_report(ds.train, qc)
    cov, held = report.attrs["coverage"], qc.coverage([*ds.val, *ds.test])
    assert cov["total"] > 20_000 and cov["unknown_rate"] < 0.05 and held["unknown_rate"] < 0.05
    text = report_markdown(report, heldout_coverage=held)
    assert "Coverage: embedder char-ngram" in text and "Held-out coverage" in text

    # nearest neighbour (other text) shares a jieba word of 2+ Chinese characters
    sub = list(range(0, len(queries), 8))
    words = [{w for w in jieba.lcut(queries[i]) if len(w) >= 2 and "\u4e00" <= w[0] <= "\u9fff"}
             for i in sub]

    def agreement(E):
        S = E @ E.T
        texts = np.array([queries[i] for i in sub])
        S[texts[:, None] == texts[None, :]] = -9
        nn = S.argmax(1)
        return np.mean([bool(words[i] & words[j]) for i, j in enumerate(nn) if words[i]])

    char = agreement(qc.embeddings_[sub])
    mini = agreement(EmbeddingCache(embedder, tmp_path / "emb", progress=False).embed(
        [queries[i] for i in sub]))
    print(f"nearest neighbour shares a word: char n-grams {char:.3f}, MiniLM {mini:.3f}")
    assert char > 0.4 and char > 2 * mini, (char, mini)  # 0.49 vs 0.16 here


def test_few_shot_and_asker_classifier_use_the_language_fit_embedder():
    from qlearn.cluster import CharNgramEmbedder
    from qlearn.evaluate.baselines import FewShotRetriever
    from qlearn.evaluate.differentiation import AskerClassifier

    windows = []
    for t, (name, sents) in enumerate(ZH_TOPICS.items()):
        for i, s in enumerate(sents * 2):
            q = ["甲", "乙"][i % 2]
            windows.append(Window(id=f"{name}-{i}", turns=[Turn(q, s), Turn("丙", s + "啊")],
                                  responder="丙", querier=q, role_pair_id=i % 2 + 1, split="train"))
    fs = FewShotRetriever(k=2).fit(windows)
    assert isinstance(fs.embedder, CharNgramEmbedder)
    shots = fs.examples(windows[:1])[0]
    assert all(w.id.startswith("food") for w in shots)
    clf = AskerClassifier().fit(windows, ["甲", "乙"])
    assert isinstance(clf.embedder, CharNgramEmbedder)
