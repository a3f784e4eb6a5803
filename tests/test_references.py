"""The repository stands alone: every file path it mentions (.md, .py, .yaml, .ipynb) exists in it.

Scanned: the notebook sources, the library, the docs, the README, the configs and the benchmarks.
A path with a folder part must resolve from the repository root or from the citing file's folder
(for a notebook source also from ``notebooks/``, where the built notebook lives); a bare file name
must be the name of some file in the repository. Mentions of files that runs *write* (under
``runs/``, a Colab or Drive folder, or the few output names below) are not references.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", "qlearn.egg-info", "node_modules",
             ".ipynb_checkpoints"}
# Files the code writes or reads outside the repository, named in docs and docstrings.
OUTPUT_NAMES = {
    "report.md",     # qlearn demo's report in the run folder
    "stats.md",      # qlearn data build --all writes stats.md / stats.csv
    "SOURCE.md",     # written by `qlearn data download` next to each downloaded source
    "train_config.yaml",  # every training run writes its resolved config
}
# Placeholders in examples (papermill's in/out notebooks, NN_name for any notebook number).
PLACEHOLDERS = {"in.ipynb", "out.ipynb"}
# File names of other projects (transformers' and the released code's), mentioned as such.
FOREIGN_NAMES = {"modeling_llama.py", "modeling_qwen.py", "modeling_qwen2.py", "finetune_llama.py",
                 "finetune_qwen.py", "setup.py", "conftest.py"}
PATH_RE = re.compile(r"(?<![\w/.\-])((?:\.{1,2}/)*[\w\-./]*[\w\-]\.(?:md|py|yaml|ipynb))(?![\w/])")
URL_RE = re.compile(r"https?://\S+")


def _repo_files():
    out = []
    for p in ROOT.rglob("*"):
        rel = p.relative_to(ROOT)
        if p.is_file() and not SKIP_DIRS.intersection(rel.parts):
            out.append(rel)
    return out


FILES = _repo_files()
NAMES = {p.name for p in FILES}


def _scanned():
    globs = ["notebooks/src/*.py", "notebooks/build.py", "qlearn/**/*.py", "qlearn/**/*.yaml", "docs/*.md",
             "README.md", "configs/**/*.yaml", "benchmarks/*.py"]
    return sorted({p for g in globs for p in ROOT.glob(g) if p.is_file()})


SCANNED = _scanned()


def _references(text: str):
    for line_no, line in enumerate(text.splitlines(), 1):
        line = URL_RE.sub(" ", line)
        for m in PATH_RE.finditer(line):
            yield line_no, m.group(1)


def _resolves(ref: str, citing: Path) -> bool:
    if ref.startswith(("runs/", "/content/", "/tmp/", "~")) or "/runs/" in ref:
        return True  # written by a run, not part of the repository
    if "NN_" in ref or ref in PLACEHOLDERS:
        return True
    name = ref.rsplit("/", 1)[-1]
    if "/" not in ref.lstrip("./"):
        return name in NAMES or name in OUTPUT_NAMES or name in FOREIGN_NAMES
    bases = [ROOT, citing.parent]
    if citing.parent == ROOT / "notebooks" / "src":
        bases.append(ROOT / "notebooks")
    for base in bases:
        target = (base / ref).resolve()
        if target.is_relative_to(ROOT) and target.is_file():
            return True
    return False


def test_scan_covers_the_course_and_the_library():
    names = {p.relative_to(ROOT).as_posix() for p in SCANNED}
    assert "README.md" in names and "docs/method.md" in names and "qlearn/model.py" in names
    assert sum(n.startswith("notebooks/src/") for n in names) == 8


@pytest.mark.parametrize("path", SCANNED, ids=[p.relative_to(ROOT).as_posix() for p in SCANNED])
def test_every_referenced_file_exists(path):
    text = path.read_text(encoding="utf-8")
    assert "shared/docs" not in text, f"{path.relative_to(ROOT)} points at ../shared/docs, outside the repository"
    dead = [f"line {n}: {ref}" for n, ref in _references(text) if not _resolves(ref, path)]
    assert not dead, f"{path.relative_to(ROOT)} references files that are not in the repository: {dead}"


def test_the_check_catches_a_dead_reference(tmp_path):
    """The checker itself: the old outside-the-repo citations are reported, resolvable ones are not."""
    citing = ROOT / "notebooks" / "src" / "00_introduction.py"
    text = ("see paper-reference.md §6, dual-tower-probe.md and docs/nowhere.md; "
            "but docs/method.md §4, [m](../docs/method.md) and `qlearn/model.py` exist; "
            "https://example.org/x/missing.md is a URL, runs/demo/report.md an output")
    dead = [ref for _, ref in _references(text) if not _resolves(ref, citing)]
    assert dead == ["paper-reference.md", "dual-tower-probe.md", "docs/nowhere.md"]
