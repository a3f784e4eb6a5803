"""Every notebook is built from its source and shares the course header (execution: `pytest --nbmake`)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

NB = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted((NB / "src").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("src", SOURCES, ids=[s.stem for s in SOURCES])
def test_notebook_is_built_from_source_and_has_header(src, tmp_path):
    nb = json.loads((NB / f"{src.stem}.ipynb").read_text())
    cells = nb["cells"]
    head = "".join(cells[0]["source"])
    assert "colab.research.google.com/github/" in head and f"notebooks/{src.stem}.ipynb" in head
    assert "Learning goals" in head and "Time and hardware" in head
    assert "parameters" in cells[2]["metadata"].get("tags", [])
    text = "\n".join("".join(c["source"]) for c in cells)
    assert "<summary>Solution</summary>" in text, "every notebook has exercises with solutions"
    assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), "commit without outputs"
    # the committed .ipynb is what notebooks/build.py makes of the source
    res = subprocess.run([sys.executable, str(NB / "build.py"), src.stem], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    rebuilt = json.loads((NB / f"{src.stem}.ipynb").read_text())
    assert rebuilt["cells"] == cells, f"run `python notebooks/build.py {src.stem}` and commit"
