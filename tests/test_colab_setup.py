"""A fresh Colab runtime, simulated: every notebook's set-up cells run in a new kernel whose working
folder is a temporary directory outside the repository, with `google.colab` importable.

The install cell then does what it does on Colab: `git clone` (here from this repository instead of
GitHub, so no network is needed), `pip install -e` (replaced by an echo: the test must not touch the
environment it runs in; the clone is put first on `sys.path` exactly as on Colab), then finds the
repository through the imported package. The parameters, data and Drive cells follow. No model is
loaded and nothing is trained. Also here: the switch to the unquantised hub weights of SmolLM2.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks"
NOTEBOOKS = sorted(NB.glob("[0-9][0-9]_*.ipynb"))

FAKE_COLAB = "import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')"
CHECKS = """\
import qlearn
clone = Path("qlearn-src").resolve()
assert Path.cwd() != REPO and not Path.cwd().is_relative_to(REPO), "cwd is outside the clone"
assert REPO == clone, (REPO, clone)
assert Path(qlearn.__file__).resolve().is_relative_to(clone), qlearn.__file__
assert (REPO / "configs" / "quick-cpu.yaml").is_file()
assert (REPO / "results" / "ross-smollm2-cpu" / "table.csv").is_file()
assert QUICK is True and isinstance(MODEL, str) and RESPONDER
print("COLAB-SETUP-OK", REPO)"""


def _clone_source(tmp_path: Path) -> str:
    """What `git clone` reads: this repository (its committed state)."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        return str(ROOT)
    bare = tmp_path / "origin"  # not a git checkout (an sdist?): make a throwaway repository of the files
    shutil.copytree(ROOT, bare, ignore=shutil.ignore_patterns(".venv", "runs", "__pycache__", "*.egg-info"))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot"]):
        subprocess.run(cmd, cwd=bare, check=True)
    return str(bare)


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    return _clone_source(tmp_path_factory.mktemp("origin"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_setup_cells_run_in_a_fresh_colab_runtime(path, origin, tmp_path, data_root):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    setup = [c for c in nb.cells if "setup" in c.metadata.get("tags", [])]
    assert [c.id for c in setup] == [c.id for c in nb.cells[1:1 + len(setup)]], "set-up cells come first"
    install = setup[0].source
    url = f'REPO_URL = "https://github.com/'
    assert url in install and "!git clone" in install and "!pip install" in install
    install = install.replace(url, f'REPO_URL = "{origin}"  # "https://github.com/', 1)
    install = install.replace("!pip install", "!echo on Colab: pip install")
    cells = [nbformat.v4.new_code_cell(FAKE_COLAB), nbformat.v4.new_code_cell(install),
             *[nbformat.v4.new_code_cell(c.source) for c in setup[1:]], nbformat.v4.new_code_cell(CHECKS)]
    run = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    cwd = tmp_path / "content"
    cwd.mkdir()
    env = {"QLEARN_QUICK": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "QLEARN_DATA_ROOT": str(data_root)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(run, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    out = "".join(o.get("text", "") for o in run.cells[-1].outputs if o.get("output_type") == "stream")
    assert "COLAB-SETUP-OK" in out, json.dumps(run.cells[-1].outputs)[:2000]
    assert (cwd / "qlearn-src" / "notebooks" / path.name).is_file(), "the install cell cloned the repository"


def test_hub_weights_are_one_switch_away(monkeypatch, tmp_path):
    """`smollm2-135m-hub` names the unquantised weights; offline and uncached it says so in one line;
    QLEARN_PREFER_HUB=1 falls back to the offline Q4_1 copy when the hub cannot be reached."""
    from qlearn import assets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setattr(assets, "_hub_cached", lambda repo_id: False)
    with pytest.raises(assets.AssetNotFoundError, match="offline Q4_1 copy"):
        assets.resolve_lm("smollm2-135m-hub")
    monkeypatch.setenv("QLEARN_PREFER_HUB", "1")
    assert assets.resolve_lm("smollm2-135m") == str(assets.smollm2_path())
    monkeypatch.setattr(assets, "_hub_cached", lambda repo_id: True)
    assert assets.resolve_lm("smollm2-135m") == assets.SMOLLM2_HUB
    assert assets.resolve_lm("smollm2-135m-hub") == assets.SMOLLM2_HUB
    monkeypatch.delenv("QLEARN_PREFER_HUB")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(assets, "_hub_cached", lambda repo_id: False)
    assert assets.resolve_lm("smollm2-135m-hub") == assets.SMOLLM2_HUB  # online: the hub copy


def test_package_homepage_names_the_slug_the_notebooks_clone():
    """pyproject's [project.urls] cannot read GITHUB_SLUG, so a fork that changes one must change
    the other: this fails until they agree."""
    import tomllib

    from qlearn import GITHUB_SLUG

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["urls"]["Homepage"] == f"https://github.com/{GITHUB_SLUG}"
