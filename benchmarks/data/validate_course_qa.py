"""Check every gold answer string of course_qa.jsonl against the text of its gold page(s).

Text as pypdfium2 extracts it, NFKC-normalised with whitespace removed (as the set was written).

    .venv/bin/python benchmarks/data/validate_course_qa.py
"""
from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from pathlib import Path

import pypdfium2 as pdfium

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("PDFQA_DATA", HERE.parents[2] / "shared" / "data"))


def norm(s: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", s))


def main() -> int:
    paths = {p.name: p for p in (DATA / "pdfs").glob("*/*.pdf")}
    cache: dict[str, list[str]] = {}

    def pages(doc: str) -> list[str]:
        if doc not in cache:
            pdf = pdfium.PdfDocument(str(paths[doc]))
            cache[doc] = [norm(pdf[i].get_textpage().get_text_range()) for i in range(len(pdf))]
        return cache[doc]

    rows = [json.loads(line) for line in (HERE / "course_qa.jsonl").read_text(encoding="utf-8").splitlines() if line]
    fails = 0
    for r in rows:
        for a in r["answers"]:
            if not any(norm(a) in pages(p["doc"])[p["page"] - 1] for p in r["pages"]):
                fails += 1
                found = [(d, i + 1) for d in r["doc_ids"] for i, t in enumerate(pages(d)) if norm(a) in t]
                print("FAIL", r["id"], repr(a), "found on", found)
    print("answerable rows:", len(rows), "failing answer strings:", fails)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
