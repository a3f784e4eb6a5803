"""Collator on the real SmolLM2 tokenizer with invented dialogues; the cluster batch sampler."""
import copy

import pytest

from qlearn.assets import load_tokenizer
from qlearn.collate import IGNORE, ClusterBatchSampler, Collator
from qlearn.data.types import Window
from qlearn.template import render_dialogue, turn_format


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("smollm2-135m")


def _window(turns, querier="Marta", role_pair_id=2, cluster_id=3, wid="w1"):
    return Window(id=wid, turns=turns, responder="Olek", querier=querier,
                  role_pair_id=role_pair_id, cluster_id=cluster_id)


TURNS = [("Olek", "Morning."), ("Marta", "Did you water the ferns?"),
         ("Olek", "Twice.  They looked thirsty."), ("Marta", "Ferns are always thirsty!"),
         ("Olek", "Then I will buy a bigger can.")]


def test_encoding_matches_rendered_template(tok):
    c = Collator(tok)
    f = c.encode(_window(TURNS))
    rendered = render_dialogue(turn_format(tok), TURNS)
    assert f["input_ids"] == tok(rendered, add_special_tokens=False)["input_ids"]
    assert f["querier"] == 1 and f["cluster"] == 3


def test_labels_cover_responder_content_and_turn_end_only(tok):
    f = Collator(tok).encode(_window(TURNS))
    supervised = [t for t, lab in zip(f["input_ids"], f["labels"]) if lab != IGNORE]
    assert [lab for lab in f["labels"] if lab != IGNORE] == supervised
    # no names, no querier text, no turn starts, and not the leading "Morning.": a responder
    # turn before the window's first query is context, never a label (qlearn.data.audit)
    expected = "".join(text + "<|im_end|>" for s, text in TURNS[1:] if s == "Olek")
    assert tok.decode(supervised) == expected
    assert "Morning" not in tok.decode(supervised)
    pooled = tok.decode([t for t, m in zip(f["input_ids"], f["responder_mask"]) if m])
    assert pooled == "".join("Olek\n" + text for s, text in TURNS if s == "Olek")


def test_batch_padding_is_distinct_from_turn_end(tok):
    c = Collator(tok)
    short = _window(TURNS[1:3], wid="s", cluster_id=None, role_pair_id=1)
    b = c([_window(TURNS), short])
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.pad_token_id != end_id
    n = len(c.encode(short)["input_ids"])
    assert b["attention_mask"][1, :n].all() and not b["attention_mask"][1, n:].any()
    assert (b["input_ids"][1, n:] == tok.pad_token_id).all()
    assert (b["labels"][1, n:] == IGNORE).all() and not b["responder_mask"][1, n:].any()
    # every turn end is attended to (pad == EOS would have masked them)
    assert b["attention_mask"][b["input_ids"] == end_id].all()
    assert b["querier"].tolist() == [1, 0] and b["cluster"].tolist() == [3, 0]
    assert set(b) == {"input_ids", "attention_mask", "labels", "responder_mask", "querier", "cluster"}


def test_truncation_from_the_left_keeps_the_final_responder_turn(tok):
    full = Collator(tok).encode(_window(TURNS))
    ids, labels, _ = Collator(tok).encode_turn(*TURNS[-1], is_responder=True)  # still a label
    limit = len(ids) + 3  # room for the final turn only
    c = Collator(tok, max_length=limit)
    with pytest.warns(UserWarning, match="max_length"):
        f = c.encode(_window(TURNS))
    assert f["input_ids"] == ids and f["labels"] == labels
    assert c.stats == {"windows": 1, "truncated_turns": 4, "truncated_tokens": 0}
    tiny = Collator(tok, max_length=5)
    with pytest.warns(UserWarning, match="max_length"):
        f = tiny.encode(_window(TURNS))
    assert f["input_ids"] == full["input_ids"][-5:] and tiny.stats["truncated_tokens"] > 0


def test_pad_equal_to_turn_end_is_refused(tok):
    bad = copy.deepcopy(tok)
    bad.pad_token = "<|im_end|>"
    with pytest.raises(ValueError, match="ensure_distinct_pad"):
        Collator(bad)


def test_cluster_batches_stay_within_one_cluster():
    clusters = [0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 2, 2, 0]
    s = ClusterBatchSampler(clusters, batch_size=2, seed=1)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(len(clusters)))
    assert all(len({clusters[i] for i in b}) == 1 for b in batches)
    s.set_epoch(1)
    assert list(s) != batches  # reshuffled per epoch
    assert len(s) == len(batches) == 3 + 2 + 3  # clusters of 5, 3 and 5 windows
