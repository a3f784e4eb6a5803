"""Metrics against hand-computed values and against the reference libraries (fixtures written by us)."""
import numpy as np
import pytest
from nltk.translate.bleu_score import corpus_bleu
from rouge import Rouge

from qlearn.evaluate import (bleu, bootstrap_ci, distinct_n, guess_lang, paired_test, rouge_l,
                             rouge_l_scores)

EN_PRED = ["The cat sat on the mat.", "I told you, we were on a break!", "Sure. Why not? Let's go.",
           "no idea", "Bazinga. You fell for it again.", "Okay okay okay, fine."]
EN_REF = ["The cat is on the mat.", "We were on a break, I told you.", "Why not. Let's go now.",
          "I have no idea what you mean", "You fell for it. Again.", "Fine, whatever you say."]
ZH_PRED = ["我今天很高兴", "掌柜的，你别生气了。", "这件事我自有分寸", "好的好的", "OK，我来了"]
ZH_REF = ["今天我很开心", "你别生气，掌柜的。", "这事你别管了", "好吧", "我来了ok"]


def test_rouge_l_english_hand_computed():
    # [the cat sat on the mat] vs [the cat is on the mat]: LCS 5 of 6 and 6 -> F = 5/6
    # [hello there] vs [hello]: LCS 1, P = 1/2, R = 1 -> F = 2/3
    scores = rouge_l_scores(["The cat sat on the mat", "Hello there!"], ["the cat is on the mat", "hello"])
    assert scores == pytest.approx([500 / 6, 200 / 3])
    assert rouge_l(["The cat sat on the mat", "Hello there!"],
                   ["the cat is on the mat", "hello"]) == pytest.approx(75.0)


def test_rouge_l_chinese_per_character():
    # 我今天很高兴 vs 今天我很开心: LCS 今天很 = 3 of 6 and 6 -> F = 1/2; mixed text keeps ASCII words
    assert rouge_l(["我今天很高兴"], ["今天我很开心"], lang="zh") == pytest.approx(50.0)
    assert rouge_l(["OK，我来了"], ["我来了ok"], lang="zh") == pytest.approx(75.0)
    # rouge-score's own tokenizer drops Chinese entirely: that is the bug the char tokenizer fixes
    from rouge_score import rouge_scorer

    assert rouge_scorer.RougeScorer(["rougeL"]).score("今天我很开心", "我今天很高兴")["rougeL"].fmeasure == 0


def test_rouge_l_english_equals_rouge_score_default():
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rougeL"])
    expected = [100 * default.score(r, p)["rougeL"].fmeasure for p, r in zip(EN_PRED, EN_REF)]
    assert rouge_l_scores(EN_PRED, EN_REF) == pytest.approx(expected)


def test_paper_variant_is_set_based_and_case_sensitive():
    # sets: {the, cat} vs {the, cat} -> F = 1 (rouge-score: 3 tokens, LCS 2 -> F = 0.8)
    assert rouge_l(["the the cat"], ["the cat"], variant="paper") == pytest.approx(100, abs=1e-5)
    assert rouge_l(["the the cat"], ["the cat"]) == pytest.approx(80)
    assert rouge_l(["The cat"], ["the cat"], variant="paper") == pytest.approx(50, abs=1e-5)


@pytest.mark.parametrize("lang,pred,ref", [("en", EN_PRED, EN_REF), ("zh", ZH_PRED, ZH_REF)])
def test_paper_variant_equals_rouge_package(lang, pred, ref):
    if lang == "zh":
        hyps, refs = [" ".join(p) for p in pred], [" ".join(r) for r in ref]
    else:
        hyps, refs = pred, ref
    expected = 100 * Rouge().get_scores(hyps, refs, avg=True)["rouge-l"]["f"]
    assert rouge_l(pred, ref, lang=lang, variant="paper") == pytest.approx(expected, rel=1e-9)
    # an empty prediction makes the package raise; the official script counts it as 0
    with pytest.raises(ValueError):
        Rouge().get_scores([""] + list(hyps), [refs[0]] + list(refs), avg=True)
    with_empty = rouge_l([""] + list(pred), [ref[0]] + list(ref), lang=lang, variant="paper")
    assert with_empty == pytest.approx(expected * len(pred) / (len(pred) + 1))


def test_bleu_equals_nltk_and_hand_value():
    for n in (1, 2, 3, 4):
        expected = 100 * corpus_bleu([[r.split()] for r in EN_REF], [p.split() for p in EN_PRED],
                                     weights=(1 / n,) * n)
        assert bleu(EN_PRED, EN_REF, n=n) == pytest.approx(expected)
    zh = 100 * corpus_bleu([[list(r)] for r in ZH_REF], [list(p) for p in ZH_PRED], weights=(1, 0, 0, 0)[:1])
    assert bleu(ZH_PRED, ZH_REF, lang="zh", n=1, zh_tokens="chars") == pytest.approx(zh)
    # a b c d vs a b e d: unigram precision 3/4, no brevity penalty
    assert bleu(["a b c d"], ["a b e d"], n=1) == pytest.approx(75)
    assert bleu(["a b c d"], ["a b e d"], n=1, stopwords={"c", "e"}) == pytest.approx(100)


def test_bleu_stopword_file(tmp_path):
    f = tmp_path / "stop.txt"
    f.write_text("了\n的\n\n", encoding="utf-8")
    assert bleu(["好的了"], ["好"], lang="zh", n=1, stopwords=f, zh_tokens="chars") == pytest.approx(100)
    with pytest.raises(FileNotFoundError, match="one word per line"):
        bleu(["a"], ["a"], stopwords=tmp_path / "missing.txt")


def test_distinct_n_and_lang():
    assert distinct_n(["a a b", "a b"], 1) == pytest.approx(40)
    assert distinct_n(["a a b", "a b"], 2) == pytest.approx(200 / 3)
    assert distinct_n(["好好"], 1, lang="zh") == pytest.approx(50)
    assert guess_lang(ZH_PRED) == "zh" and guess_lang(EN_PRED) == "en"


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge_l(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="unknown ROUGE-L variant"):
        rouge_l(["a"], ["a"], variant="rouge2")
    with pytest.raises(TypeError, match="lists of strings"):
        bleu("a b", "a b")


def test_bootstrap_and_paired_test():
    rng = np.random.default_rng(1)
    x = rng.normal(10, 2, size=200)
    ci = bootstrap_ci(x)
    assert ci.low < x.mean() < ci.high and ci.high - ci.low < 1.5
    assert bootstrap_ci([3.0] * 20).low == bootstrap_ci([3.0] * 20).high == 3.0
    better = paired_test(x + 1 + rng.normal(0, 0.5, 200), x)
    assert better.p_value < 0.001 and better.ci.low > 0.5
    same = paired_test(x, x)
    assert same.diff == 0 and same.p_value == 1.0


def test_chinese_bleu_on_jieba_words():
    """The official script segments Chinese with jieba; BLEU-n then counts word n-grams."""
    import jieba

    from qlearn.evaluate.metrics import bleu_tokens

    assert bleu_tokens("我今天很高兴", "zh") == jieba.lcut("我今天很高兴")
    assert "今天" in bleu_tokens("我今天很高兴", "zh")  # a word, not two characters
    for n in (1, 2, 3, 4):
        expected = 100 * corpus_bleu([[jieba.lcut(r)] for r in ZH_REF], [jieba.lcut(p) for p in ZH_PRED],
                                     weights=(1 / n,) * n)
        assert bleu(ZH_PRED, ZH_REF, lang="zh", n=n) == pytest.approx(expected)
    # 今天 matched as one word: unigram precision 2/3 (我, 今天 of 我/今天/很高兴 vs 今天/我/很/开心)
    words = bleu(["我今天很高兴"], ["今天我很开心"], lang="zh", n=1)
    chars = bleu(["我今天很高兴"], ["今天我很开心"], lang="zh", n=1, zh_tokens="chars")
    assert words != pytest.approx(chars)
    with pytest.raises(ValueError, match="zh_tokens='jieba'"):
        bleu(["好"], ["好"], lang="zh", zh_tokens="jieba")


def test_builtin_stopwords_for_english_and_chinese():
    from qlearn.evaluate.metrics import ZH_STOPWORDS, stopword_set

    # English: scikit-learn's list; tokens matched lower-cased without edge punctuation
    assert {"the", "and", "you"} <= stopword_set("builtin", "en")
    assert bleu(["The cat, and you"], ["cat, the"], n=1) < 100
    assert bleu(["The cat, and you"], ["cat, the"], n=1, stopwords="builtin") == pytest.approx(100)
    # Chinese: our function-word list, on jieba words
    assert {"的", "了", "我们"} <= ZH_STOPWORDS == stopword_set("builtin", "zh")
    assert bleu(["我们的掌柜"], ["掌柜"], lang="zh", n=1) < 100
    assert bleu(["我们的掌柜"], ["掌柜"], lang="zh", n=1, stopwords="builtin") == pytest.approx(100)


def test_score_all_reports_bleu_1_to_4():
    from qlearn.evaluate.metrics import score_all

    row = score_all(EN_PRED, EN_REF, "en")
    assert [k for k in row if k.startswith("bleu")] == ["bleu1", "bleu2", "bleu3", "bleu4"]
    assert row["bleu1"] >= row["bleu2"] >= row["bleu3"] >= row["bleu4"]
