"""Build the course notebooks from their sources: ``python notebooks/build.py``.

Each notebook is written as a plain Python file in ``notebooks/src/NN_name.py`` (percent format:
``# %%`` starts a code cell, ``# %% [markdown]`` a Markdown cell whose lines start with ``# ``) so
that it can be reviewed, diffed and linted like code. Its first cell is a ``META = {...}`` dict:
title, goals, time, hardware. This script prepends the header every notebook shares — title,
"Open in Colab" badge, goals, time and hardware, the Colab install cell and the ``parameters``
cell — and writes ``notebooks/NN_name.ipynb`` without outputs.

Quick mode: the parameters cell sets ``QUICK`` from ``$QLEARN_QUICK`` ("1"/"0"), and otherwise
to "no GPU here". papermill can inject other values into the cell tagged ``parameters``.

Exercises: a Markdown cell with the task, a code cell to try it, then the solution inside
``<details><summary>Solution</summary> ... </details>`` (collapsed in Jupyter and Colab).
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from qlearn import GITHUB_SLUG  # noqa: E402

INSTALL = """\
# Colab: install qlearn (and only what Colab lacks). Locally, `make setup` already did this.
import os, sys
if "google.colab" in sys.modules and not os.path.exists("qlearn-src"):
    !git clone -q https://github.com/{slug} qlearn-src
    !pip install -q -e "qlearn-src[offline]"
    sys.path.insert(0, "qlearn-src")"""

PARAMETERS = """\
# Parameters (papermill can inject others). QUICK=True: minutes on a CPU; False: the full run.
import os
import torch
QUICK = os.environ.get("QLEARN_QUICK", "" if torch.cuda.is_available() else "1") == "1"
MODEL = {model!r} if QUICK else {full_model!r}
RESPONDER = {responder!r}"""


def _cells(source: str):
    """Split percent-format source into (kind, text) cells."""
    blocks = re.split(r"^# %%(.*)$", source, flags=re.M)
    for marker, body in zip(blocks[1::2], blocks[2::2]):
        body = body.strip("\n")
        if "[markdown]" in marker:
            text = "\n".join(re.sub(r"^# ?", "", line) for line in body.splitlines())
            yield "markdown", text
        elif body.strip():
            yield "code", body


def build(src: Path) -> Path:
    cells = list(_cells(src.read_text(encoding="utf-8")))
    kind, meta_src = cells[0]
    meta = ast.literal_eval(meta_src.split("=", 1)[1].strip())
    name = src.stem
    badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             f"(https://colab.research.google.com/github/{GITHUB_SLUG}/blob/main/notebooks/{name}.ipynb)")
    goals = "\n".join(f"- {g}" for g in meta["goals"])
    header = (f"# {meta['title']}\n\n{badge}\n\n**Learning goals**\n\n{goals}\n\n"
              f"**Time and hardware.** {meta['time']} {meta['hardware']}\n\n"
              "**Quick mode vs full mode.** On a CPU the notebook runs in *quick mode* (a small model, "
              "little data, a few steps); on a GPU it runs the full version. Set `QUICK` in the "
              "parameters cell to choose yourself.")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell(header))
    nb.cells.append(nbformat.v4.new_code_cell(INSTALL.format(slug=GITHUB_SLUG)))
    params = nbformat.v4.new_code_cell(PARAMETERS.format(
        model=meta.get("model", "smollm2-135m"), full_model=meta.get("full_model", "Qwen/Qwen2.5-0.5B-Instruct"),
        responder=meta.get("responder", "Sheldon")))
    params.metadata["tags"] = ["parameters"]
    nb.cells.append(params)
    for kind, text in cells[1:]:
        cell = (nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell)(text)
        nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:03d}"  # stable ids: rebuilding an unchanged source changes nothing
    out = HERE / f"{name}.ipynb"
    nbformat.write(nb, out)
    return out


def main(names=None):
    sources = sorted((HERE / "src").glob("[0-9][0-9]_*.py"))
    for src in sources:
        if not names or src.stem in names:
            print("built", build(src).relative_to(HERE.parent))


if __name__ == "__main__":
    main(sys.argv[1:])
