"""The course assistant end to end in a real headless browser: Debian's chromium driven by
playwright-core (tests/browser/e2e.js). Upload a PDF through the file picker, wait until it is
indexed, ask, see the answer and its citation, open the cited page image, ask a follow-up; a renamed
non-PDF is refused with the reason shown in the page; the interface is Japanese for a Japanese browser.
Writes the screenshot used in the README to docs/screenshot.png (``PDFQA_SCREENSHOT`` to change).

Needs ``scripts/install_browser_deps.sh`` (``make test`` runs it): /usr/bin/chromium and
tests/browser/node_modules.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
try:  # python-multipart (module python_multipart since 0.0.13, multipart before)
    import python_multipart  # noqa: F401
except ImportError:
    pytest.importorskip("multipart")

from .app_server import running  # noqa: E402
from .conftest import ROOT, SLIDES  # noqa: E402

BROWSER_DIR = ROOT / "tests" / "browser"
CHROMIUM = Path(os.environ.get("PDFQA_CHROMIUM", "/usr/bin/chromium"))


def _missing() -> str | None:
    if not shutil.which("node"):
        return "node is not installed"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").exists():
        return "tests/browser/node_modules is missing"
    return None


@pytest.mark.slow
def test_course_assistant_in_a_real_browser(tmp_path):
    why = _missing()
    if why:
        pytest.skip(f"{why}: run scripts/install_browser_deps.sh")
    from pdfqa.app import create_app

    not_pdf = tmp_path / "homework.pdf"  # a text file with a PDF's name
    not_pdf.write_text("These are my notes, saved with the wrong extension.\n")
    shot = Path(os.environ.get("PDFQA_SCREENSHOT", ROOT / "docs" / "screenshot.png"))
    app = create_app(tmp_path / "courses", generator="extractive", generators=["extractive", "default"],
                     answer_timeout=240)
    with running(app) as url:
        env = {**os.environ, "BASE_URL": url, "PDF": str(SLIDES), "NOT_PDF": str(not_pdf),
               "QUESTION": "What is byte pair encoding?", "FOLLOW_UP": "How does it build its vocabulary?",
               "SCREENSHOT": str(shot), "CHROMIUM": str(CHROMIUM)}
        proc = subprocess.run(["node", str(BROWSER_DIR / "e2e.js")], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=900)
    assert proc.stdout.strip(), f"no output from the browser script:\n{proc.stderr[-4000:]}"
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, f"{seen.get('error')}\n{proc.stderr[-4000:]}"

    assert seen["title"] == "Course assistant" and seen["lang"] == "en"
    assert seen["course_id"] == "natural-language-processing"
    assert "not a PDF" in seen["rejection"] and "homework.pdf" in seen["rejection"]
    assert seen["rejected_listed"] is False
    assert seen["doc"] == SLIDES.name and seen["doc_meta"].startswith("31 pages")
    assert "byte" in seen["answer"].lower() or "BPE" in seen["answer"]
    assert seen["citations"] and SLIDES.name in seen["citations"][0]
    assert seen["page_image"]["w"] > 300 and seen["page_image"]["h"] > 200
    assert "quote=" in seen["page_image"]["src"] and ".png" in seen["page_image"]["src"]
    assert seen["page_label_text"].startswith(f"{SLIDES.name} — page ")
    assert seen["highlight_boxes"] > 0
    assert "searched as:" in seen["follow_up"]
    assert seen["ja_title"] == "授業アシスタント" and seen["ja_lang"] == "ja" and seen["ja_ask"] == "質問する"
    assert seen["page_errors"] == [], seen["page_errors"]
    # the only console errors allowed are the refused requests the script provoked on purpose
    unexpected = [e for e in seen["console_errors"] if "status of 415" not in e]
    assert unexpected == [], unexpected

    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (1440, 900)
