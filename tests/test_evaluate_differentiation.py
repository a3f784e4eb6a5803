"""Querier differentiation: name swap, reply change and asker recovery."""
import pytest

from evaluate_toy import toy_dataset
from qlearn.evaluate.differentiation import (AskerClassifier, differentiation, replies_by_asker,
                                             score_differentiation, swap_querier, top_askers)


def test_swap_keeps_words_and_changes_only_the_name():
    w = toy_dataset().test[1]  # 4 turns: Bob, Ann, Ann, Bob
    s = swap_querier(w, "Zoe")
    assert [t.text for t in s.turns] == [t.text for t in w.turns]
    assert [t.speaker for t in s.turns] == [("Zoe" if t.speaker == "Ann" else t.speaker) for t in w.turns]
    assert s.querier == "Zoe" and w.querier == "Ann" and s.responder == "Bob"


def test_top_askers_by_frequency():
    ds = toy_dataset()
    ds.train = ds.train + ds.train[-3:]  # Dee gets 3 more
    assert top_askers(ds.train, 2) == ["Dee", "Ann"]


@pytest.fixture(scope="module")
def classifier(embedder):
    ds = toy_dataset()
    return AskerClassifier(embedder).fit(ds.train, ["Ann", "Carl", "Dee"])


def test_asker_recovery_is_chance_when_replies_ignore_the_asker(classifier):
    ds = toy_dataset(n_test=4)
    gold = {q: [w.reply for w in ds.test if w.querier == q] for q in ("Ann", "Carl", "Dee")}
    tailored = score_differentiation(gold, classifier)
    assert tailored.recovery == 100 and tailored.distinct_windows == 100 and tailored.reply_change > 30
    same = score_differentiation({q: gold["Carl"] for q in gold}, classifier)
    assert same.recovery <= same.chance + 1e-9 and same.reply_change == 0 and same.distinct_windows == 0
    empty = score_differentiation({q: [""] * len(gold["Ann"]) for q in gold}, classifier)
    assert empty.reply_change == 0 and empty.distinct_windows == 0
    with pytest.raises(ValueError, match="at least two askers"):
        score_differentiation({"Ann": gold["Ann"]}, classifier)


def test_differentiation_end_to_end_on_tiny(tiny, classifier):
    model, tok = tiny
    ds = toy_dataset(n_test=1)
    res = differentiation(model, tok, ds, n_windows=2, n_askers=3, classifier=classifier,
                          max_new_tokens=4, progress=False)
    assert res.n_windows == 2 and res.askers == ["Ann", "Carl", "Dee"]
    assert all(len(v) == 2 for v in res.replies.values())
    assert 0 <= res.recovery <= 100 and 0 <= res.reply_change <= 100
    direct = replies_by_asker(model, tok, ds.test[:2], ["Ann", "Carl", "Dee"], max_new_tokens=4,
                              progress=False)
    assert direct == res.replies  # greedy: the same prompts give the same replies
