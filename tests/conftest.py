"""Shared fixtures: the real SmolLM2-135M and MiniLM (offline), the tiny random Llama, real data."""
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # never hang on hub retries
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the real SmolLM2-135M-Instruct, fp32 on CPU, loaded once."""
    from qlearn.assets import load_lm

    return load_lm("smollm2-135m", dtype="fp32", device="cpu")


@pytest.fixture(scope="session")
def tiny():
    from qlearn.assets import tiny_lm

    return tiny_lm()


@pytest.fixture(scope="session")
def embedder():
    from qlearn.assets import load_embedder

    return load_embedder("minilm", device="cpu")


@pytest.fixture(scope="session")
def data_root():
    """``$QLEARN_DATA_ROOT`` (tests fail, not skip, when it is set and missing), else ../shared/data."""
    env = os.environ.get("QLEARN_DATA_ROOT")
    if env:
        root = Path(env)
        assert root.is_dir(), f"QLEARN_DATA_ROOT={env} is set but is not a folder"
        return root
    root = REPO.parent / "shared" / "data"
    if not root.is_dir():
        pytest.skip("no transcripts: set QLEARN_DATA_ROOT to the shared data folder")
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
