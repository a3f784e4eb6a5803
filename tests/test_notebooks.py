"""The committed notebooks: built from their sources, the shared header, the exercise convention,
the student edition, and the rule for stored outputs (no transcript text, ever).

Execution itself is `pytest --nbmake notebooks/` (make test); rendering is
`python notebooks/build.py --render`.
"""
import base64
import html
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks"
SOURCES = sorted((NB / "src").glob("[0-9][0-9]_*.py"))
IDS = [s.stem for s in SOURCES]
MIN_UTTERANCE = 25  # characters: a stored output must not contain any transcript utterance this long


def _load_build():
    spec = importlib.util.spec_from_file_location("qlearn_notebook_build", NB / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def _committed(src):
    return json.loads((NB / f"{src.stem}.ipynb").read_text(encoding="utf-8"))


def _text(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_notebook_is_built_from_source_and_has_header(src):
    nb = _committed(src)
    cells = nb["cells"]
    head = _text(cells[0])
    assert f"colab.research.google.com/github/{build.GITHUB_SLUG}/blob/main/notebooks/{src.stem}.ipynb" in head
    assert "Learning goals" in head and "Time and hardware" in head
    assert "setup" in _tags(cells[1]) and f'REPO_URL = "https://github.com/{build.GITHUB_SLUG}"' in _text(cells[1])
    assert "parameters" in _tags(cells[2])
    # the committed .ipynb is what notebooks/build.py makes of the source (outputs aside)
    made = build.make(src)
    assert [(c.cell_type, c.source, c.metadata) for c in made.cells] == \
           [(c["cell_type"], _text(c), c["metadata"]) for c in cells], \
        f"run `python notebooks/build.py {src.stem}` and commit"
    assert {k: v for k, v in nb["metadata"].items()} == dict(made.metadata)


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_header_matches_what_the_notebook_needs(src):
    meta, nb = build.read_meta(src), _committed(src)
    setup = "\n".join(_text(c) for c in nb["cells"] if "setup" in _tags(c))
    body = "\n".join(_text(c) for c in nb["cells"] if "setup" not in _tags(c))
    assert ("download(SOURCE" in setup) == bool(meta.get("data")), "the data cell downloads transcripts when absent"
    assert ("drive.mount" in setup) == bool(meta.get("trains")), "training notebooks offer the Drive cell"
    if meta.get("gpu"):
        assert nb["metadata"]["accelerator"] == "GPU" and nb["metadata"]["colab"]["gpuType"] == "T4"
    else:
        assert "accelerator" not in nb["metadata"]
    assert "Path.cwd()" not in body and "download(SOURCE" not in body, "no working-directory guessing"
    if meta.get("lm", True):
        assert "Q4_1 GGUF" in _text(nb["cells"][0]), "say which SmolLM2 weights the outputs come from"


def test_the_training_notebooks_ask_colab_for_a_gpu():
    gpu = {s.stem[:2] for s in SOURCES if build.read_meta(s).get("gpu")}
    assert {"04", "06", "07"} <= gpu
    trains = {s.stem[:2] for s in SOURCES if build.read_meta(s).get("trains")}
    assert {"04", "06", "07"} <= trains


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_exercises_solutions_and_questionnaire(src):
    cells = _committed(src)["cells"]
    kinds = ["solution" if "solution" in _tags(c) else "exercise" if "exercise" in _tags(c) else
             "questionnaire" if "questionnaire" in _tags(c) else "" for c in cells]
    assert kinds.count("solution") >= 1, "every notebook has exercises with solutions"
    for i, kind in enumerate(kinds):
        if kind == "solution":
            assert _text(cells[i]).startswith(build.SOLUTION) and _text(cells[i]).rstrip().endswith("</details>")
            assert cells[i - 1]["cell_type"] == "code" and "exercise" in _tags(cells[i - 1]) \
                or cells[i - 1]["cell_type"] == "markdown", "a solution follows its exercise"
        if kind == "exercise":
            assert _text(cells[i]).strip() == build.EXERCISE, "exercise cells are empty in the course too"
    assert kinds[-1] == "questionnaire", "every notebook ends with its questionnaire"
    questions = re.findall(r"^\d+\. ", _text(cells[-1]), flags=re.M)
    assert 5 <= len(questions) <= 8, f"{len(questions)} questions; fastbook style is a short list"
    guide = (ROOT / "docs" / "teaching_guide.md").read_text(encoding="utf-8")
    section = guide.split(f"### Questionnaire {src.stem[:2]}", 1)
    assert len(section) == 2, f"docs/teaching_guide.md has no answers for notebook {src.stem[:2]}"
    answers = re.findall(r"^\d+\. ", section[1].split("\n### ", 1)[0], flags=re.M)
    assert len(answers) == len(questions), "one answer note per question in the teaching guide"


def test_student_edition_has_no_solutions(tmp_path):
    build.main(["--student", "--out", str(tmp_path)])
    for src in SOURCES:
        student = json.loads((tmp_path / f"{src.stem}.ipynb").read_text(encoding="utf-8"))
        course = _committed(src)
        text = "\n".join(_text(c) for c in student["cells"])
        assert "<summary>Solution</summary>" not in text and "</details>" not in text
        exercises = [c for c in student["cells"] if "exercise" in _tags(c)]
        assert exercises and all(_text(c) == build.EXERCISE for c in exercises)
        assert not any(c.get("outputs") for c in student["cells"] if c["cell_type"] == "code")
        n_solutions = sum("solution" in _tags(c) for c in course["cells"])
        assert len(student["cells"]) == len(course["cells"]) - n_solutions
        assert "questionnaire" in _tags(student["cells"][-1])


def test_render_keeps_only_what_the_policy_allows(tmp_path):
    """`--render` on a toy source: only `# %% publish` cells keep outputs, figures are saved."""
    src = tmp_path / "src" / "99_toy.py"
    src.parent.mkdir()
    src.write_text('''# %%
META = {"title": "99 · Toy", "goals": ["render"], "time": "1 s.", "hardware": "CPU.", "lm": False}

# %%
print("PRIVATE: not a publish cell")

# %% figure=99_toy
import matplotlib.pyplot as plt
print("PUBLIC")
plt.plot([0, 1], [1, 0])
plt.show()

# %% [markdown]
# <details><summary>Solution</summary>
# </details>
''', encoding="utf-8")
    out = build.render(src, timeout=120, out_dir=tmp_path)
    nb = json.loads(out.read_text(encoding="utf-8"))
    texts = {c["id"]: json.dumps(c.get("outputs", [])) for c in nb["cells"] if c["cell_type"] == "code"}
    assert not any("PRIVATE" in t for t in texts.values())
    kept = [c for c in nb["cells"] if c.get("outputs")]
    assert len(kept) == 1 and "PUBLIC" in json.dumps(kept[0]["outputs"]) and "publish" in _tags(kept[0])
    assert (tmp_path / "figures" / "99_toy.png").read_bytes()[:4] == b"\x89PNG"
    assert nb["metadata"] == dict(build.make(src).metadata)


def test_readme_course_table_is_generated():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert build.README_START in readme, "the README course table sits between the course-table markers"
    table = readme.split(build.README_START, 1)[1].split(build.README_END, 1)[0].strip()
    assert table == build.readme_table(), "run `python notebooks/build.py` and commit README.md"


# ---- stored outputs -------------------------------------------------------------------------

def _output_text(output) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return "".join(text) if isinstance(text, list) else text
    parts = []
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") or mime == "application/json":
            parts.append("".join(value) if isinstance(value, list) else str(value))
    if output.get("output_type") == "error":
        parts.append("\n".join(output.get("traceback", [])))
    return "\n".join(parts)


def _normalise(text: str) -> str:
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return re.sub(r"\s+", " ", text.replace("\\'", "'").replace('\\"', '"')).strip()


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_outputs_only_where_the_render_policy_allows(src):
    nb = _committed(src)
    policy = nb["metadata"]["qlearn"]["render"]
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or not cell.get("outputs"):
            continue
        assert policy == "all" or "publish" in _tags(cell), \
            f"{src.stem}: cell {cell['id']} stores outputs but is not marked `# %% publish`"
        assert not any(o.get("output_type") == "error" for o in cell["outputs"]), f"{cell['id']} stored an error"
        name = cell["metadata"].get("qlearn_figure")
        if name and any("image/png" in o.get("data", {}) for o in cell["outputs"]):
            assert (NB / "figures" / f"{name}.png").is_file(), f"render again: notebooks/figures/{name}.png missing"


@pytest.fixture(scope="module")
def transcript_shingles(data_root):
    """Hashes of every 25-character piece (at offsets 0, 25, 50, ...) of every transcript utterance
    of 25 characters or more, read through qlearn's own readers (chitchat is MIT: not included)."""
    from qlearn.data import read_show
    from qlearn.data.sources import downloadable

    shingles, n = set(), 0
    for source in downloadable():  # the transcripts (chitchat, a pip package, has no pin)
        for chunk in read_show(source, root=data_root).chunks:
            for turn in chunk.turns:
                text = _normalise(turn.text)
                if len(text) >= MIN_UTTERANCE:
                    n += 1
                    shingles.update(hash(text[i:i + MIN_UTTERANCE])
                                    for i in range(0, len(text) - MIN_UTTERANCE + 1, MIN_UTTERANCE))
    assert n > 10_000, f"only {n} long utterances read from {data_root}"
    return shingles


def _leaks(text: str, shingles) -> list[str]:
    text = _normalise(text)
    return [text[i:i + 60] for i in range(len(text) - MIN_UTTERANCE + 1)
            if hash(text[i:i + MIN_UTTERANCE]) in shingles]


def test_leak_check_finds_a_transcript_line(transcript_shingles, data_root):
    from qlearn.data import read_show

    turn = next(t for c in read_show("friends", root=data_root).chunks for t in c.turns if len(t.text) > 80)
    assert _leaks(f"  bob: {turn.text[5:70]!r} ...", transcript_shingles), "a printed line is caught"
    assert not _leaks("Can you help me move this weekend? " * 3, transcript_shingles)


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_stored_outputs_carry_no_transcript_text(src, transcript_shingles):
    nb = _committed(src)
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            leaks = _leaks(_output_text(output), transcript_shingles)
            assert not leaks, f"{src.stem}, cell {cell['id']}: a stored output quotes a transcript: {leaks[0]!r}"


def test_readme_images_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    images = re.findall(r'<img src="([^"]+)"', readme) + re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme)
    local = [i for i in images if not i.startswith("http")]
    missing = [i for i in local if not (ROOT / i).is_file()]
    assert not missing, f"README shows images that are not in the repository: {missing}"


def test_committed_figures_are_pngs():
    for png in (NB / "figures").glob("*.png") if (NB / "figures").is_dir() else []:
        assert png.read_bytes()[:8] == base64.b64decode("iVBORw0KGgo="), png
