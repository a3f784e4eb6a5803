"""The prompting baselines: what each prompt contains, and replies for the same windows."""
import pytest

from evaluate_toy import toy_dataset
from qlearn.evaluate.baselines import (PROFILES_DIR, PROMPT_BASELINES, FewShotRetriever,
                                       baseline_replies, build_prompts, load_profile, model_replies,
                                       querier_profiles)

RESPONDERS = ["Rachel", "Ross", "Sheldon", "Leonard", "Claire", "Phil", "佟湘玉", "白展堂", "吕秀才",
              "甄嬛", "皇帝"]


def test_profiles_for_all_responders():
    for r in RESPONDERS:
        text = load_profile(r)
        assert (PROFILES_DIR / f"{r}.md").is_file() and r in text and 50 < len(text) < 600
    generic = load_profile("alice_42")
    assert "alice_42" in generic and "{responder}" not in generic
    with pytest.raises(FileNotFoundError, match="write"):
        load_profile("Ross", profiles_dir=PROFILES_DIR / "nowhere")


def test_few_shot_retrieves_similar_dialogues(embedder):
    ds = toy_dataset()
    shots = FewShotRetriever(embedder, k=5).fit(ds.train).examples(ds.test)
    for w, ex in zip(ds.test, shots):
        assert len(ex) == 5
        assert sum(e.querier == w.querier for e in ex) >= 4  # same topic = same querier here


def test_querier_profiles_name_distinctive_words():
    profiles = querier_profiles(toy_dataset().train)
    assert set(profiles) == {"Ann", "Carl", "Dee"}
    assert "football" in profiles["Carl"] and "football" not in profiles["Ann"]
    assert "cake" in profiles["Dee"] and "8 of the 24" in profiles["Dee"]


def test_prompts_share_the_dialogue_and_differ_in_system_turn(tiny, embedder):
    _, tok = tiny
    ds = toy_dataset()
    prompts = {s: build_prompts(s, tok, ds.test, ds.train, embedder) for s in PROMPT_BASELINES}
    for s, ps in prompts.items():
        assert len(ps) == len(ds.test)
        for p, z in zip(ps, prompts["Zero-shot"]):
            assert p.endswith(z) and z.endswith("<|im_start|>Bob\n")
    assert not prompts["Zero-shot"][0].startswith("<|im_start|>system")
    assert "You are Bob, chatting" in prompts["RPG"][0]
    assert prompts["Few-shot"][0].count("Bob: ") >= 5
    assert "About Ann:" in prompts["QCG"][0]
    with pytest.raises(ValueError, match="needs the training windows"):
        build_prompts("QCG", tok, ds.test)
    with pytest.raises(ValueError, match="unknown prompting baseline"):
        build_prompts("FT", tok, ds.test)


def test_every_baseline_replies_to_the_same_windows(tiny, embedder):
    model, tok = tiny
    ds = toy_dataset(n_test=1)
    replies = {s: baseline_replies(s, model, tok, ds.test, ds.train, embedder, max_new_tokens=4,
                                   progress=False) for s in PROMPT_BASELINES}
    replies["trained"] = model_replies(model, tok, ds.test, max_new_tokens=4, progress=False)
    assert all(len(r) == len(ds.test) and all(isinstance(x, str) for x in r) for r in replies.values())
    assert replies["trained"] == replies["Zero-shot"]  # same prompt, same weights, greedy
