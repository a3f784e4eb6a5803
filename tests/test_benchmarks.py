"""benchmarks/model_step.py runs on the tiny random-weight shape (no timing is asserted)."""
import json
import re
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "model_step.py"
TINY = ["--shape", "tiny", "--batch", "2", "--seq", "16", "--new-tokens", "2", "--repeats", "1",
        "--warmup", "0", "--threads", "1"]


def run(*args):
    res = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                         cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_model_step_on_the_tiny_shape_prints_the_ratio_lines():
    out = run(*TINY)
    assert "model=tiny (random weights)" in out
    assert re.search(r"^train step: ft \S+s \(\d+ tokens/s\)  dual \S+s \(\d+ tokens/s\)", out, re.M), out
    assert re.search(r"^generate 2 tokens: ft \S+s  dual \S+s", out, re.M), out
    assert re.search(r"^memory \(peak RSS, MiB\): ft \d+  dual \d+", out, re.M), out
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"ratio step=\d+\.\d\d generate=\d+\.\d\d memory=\d+\.\d\d", last), last


def test_model_step_profile_lists_ops_of_both_models():
    out = run(*TINY, "--profile", "--profile-steps", "1", "--top", "5", "--dtype", "bf16")
    assert "autocast=torch.bfloat16" in out
    assert re.search(r"^total self time\s+\d", out, re.M), out
    assert re.search(r"^profile ratio=\d+\.\d\d", out, re.M), out


def test_shapes_are_the_public_configs(smollm2):
    """The hand-written SmolLM2 shape is the real checkpoint's config; every shape builds."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import model_step
    finally:
        sys.path.pop(0)
    real = smollm2[0].config
    _, values = model_step.SHAPES["smollm2-135m"]
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                "tie_word_embeddings", "hidden_act"):
        assert values[key] == getattr(real, key), key
    assert values["rope_theta"] == real.rope_parameters["rope_theta"]
    assert values["rms_norm_eps"] == pytest.approx(real.rms_norm_eps)
    import torch

    for shape in ("smollm2-135m", "qwen2.5-0.5b", "llama-3-8b"):  # configs only: no weights
        kind, values = model_step.SHAPES[shape]
        from transformers import AutoConfig

        config = AutoConfig.for_model(kind, **values)
        assert config.model_type == kind and config.hidden_size == values["hidden_size"]
        assert json.loads(config.to_json_string())["vocab_size"] == values["vocab_size"]
    model, pad_id, vocab = model_step.shape_model("tiny", torch.float32, torch.device("cpu"))
    assert model.config.model_type == "llama" and vocab == 512
