"""Readers and table extractors vs pdfqa's own table heuristic, on the PDFs of issue 13.

Baseline: ``pdfium`` (the default reader; tables found by chunking.py from its lines). Candidates:
``pdfplumber`` (its lines and ``find_tables``), ``camelot`` (pdfium's lines, camelot's lattice/stream
tables), ``unstructured`` (``partition_pdf`` fast strategy; only where spaCy's ``en_core_web_sm`` is
importable). PDFs: six 10-K filings of financebench_dev with the questions whose gold pages are in
them, the DOT 2022 performance report (KPI tables) and the four ja_gov papers (表 tables).

1. **Reading speed**: every file by every reader through ``Collection.index(..., reader=R)``, file by
   file with the readers' order rotating (interleaved, so load drifts hit all alike); seconds per page
   from the index report's ``read`` stage, as a ratio to pdfium's over the same files. The collections
   embed with GloVe (cheap; it plays no part below) and size chunks at 125 GloVe tokens, which is
   e5-small's 256 on these filings (measured ratio 2.0), so the chunks are the default's.
2. **Table structure**, checked on what was indexed (``Collection.chunks(doc, page)``) against
   references built from the page itself, never from a reader's output:
   - filings (the questions' gold pages): a *financial row* is a visual row of the page (characters
     on one horizontal band, from pdfium's character boxes) that is a label followed by two or more
     figures. *row*: some chunk line holds the label directly followed by its figures; *header*: that
     chunk also holds the years of the nearest year row above it ("2018 2017 2016"); *title*: that
     chunk (text or heading path) holds the nearest statement title above ("Consolidated Balance
     Sheet"); *answer rows*: the rows that hold a gold answer's figure, kept.
   - DOT: every KPI row with a value ("Target Reduced 2023-09-30 1.22"): *row* = type, status, dates
     and value on one chunk line; *header* = the chunk holds the column names of the "Description
     Type ..." row above; *title* = it holds the "KPI 1.1.1.1 ..." title above.
   - ja_gov: the three 表 tables, their cells written down below from the pages: *row* = a row's label
     and the start of its content on one chunk line; *header*, *title* as above.
3. **Retrieval**: page-hit@5 and doc-hit@5 of ``bm25`` and ``bm25+page-bm25`` on the filings' questions,
   each reader's collection holding the same six filings (``pdfqa.evaluation.evaluate``).

    PYTHONPATH=src .venv/bin/python benchmarks/readers.py [--readers pdfium,pdfplumber,camelot,unstructured]
        [--workdir benchmarks/out/readers] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import machine  # noqa: E402

FB = DATA / "qa" / "financebench_dev"
FILINGS = ["3M_2018_10K.pdf", "3M_2022_10K.pdf", "ACTIVISIONBLIZZARD_2019_10K.pdf", "VERIZON_2022_10K.pdf",
           "CORNING_2022_10K.pdf", "AMERICANEXPRESS_2022_10K.pdf"]
DOT = DATA / "pdfs" / "en_gov" / "us_DOT2022_performance_report.pdf"
JA = DATA / "pdfs" / "ja_gov"
READERS = ["pdfium", "pdfplumber", "camelot", "unstructured"]
EMBEDDER = "word2vec:glove-50"
CHUNK_TOKENS = 125  # GloVe tokens; × 2.0 = e5-small's 256 on these filings

#: the 表 tables of the ja_gov papers, written down from the pages: (file, page, title, header cells,
#: rows as (label, the start of its content))
JA_TABLES = [
    ("cio_dp2020_03_zero_trust.pdf", 3, "表 １-1 用語の定義", ["用語", "意味"],
     [("境界型セキュリティ", "境界線（ペリメータ）で内側と外側を遮断"), ("ゼロトラスト", "「内部であっても信頼しない")]),
    ("cio_dp2020_01_AI_data.pdf", 11, "表 1 - システムに求められる保証レベルとデータ要件", ["レベル 1", "レベル 2", "レベル 3-1"],
     [("データソース", "データの取得元、取得方法")]),
    ("cio_dp2020_01_AI_data.pdf", 13, "表 1 - 政府が保有するデータと求められる手続き", ["AI の使用範囲"],
     [("学習データ（クレンジング、アノテーションを含む）に求められる手続き", "AI の学習に使用したデータの権利関係")]),
]

_FIGURE = re.compile(r"^\(?-?\d[\d,]*(?:\.\d+)?\)?%?$|^[—–-]$")
_YEAR = re.compile(r"^\(?((?:19|20)\d\d)\*?\)?,?$")
_STATEMENT = re.compile(r"\b(?:consolidated|combined|statements? of|balance sheets?|selected financial data|"
                        r"results of operations|cash flows|income statement)\b", re.IGNORECASE)


def squash(text: str) -> str:
    """Text compared without spaces, separators and currency signs (readers space glyphs differently)."""
    return re.sub(r"[\s$|€£¥]", "", text).lower()


# ------------------------------------------------------------------ references from the page itself


@dataclass
class Row:
    top: float
    text: str


def visual_rows(path: Path, number: int) -> list[Row]:
    """The page's characters grouped into horizontal bands (pdfium's boxes), left to right, a space
    where the gap is wider than a fifth of the character height: rows as printed, reader-independent."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        page = pdf[number - 1]
        height = page.get_height()
        tp = page.get_textpage()
        chars = []
        for i in range(tp.count_chars()):
            ch = tp.get_text_range(i, 1)
            if not ch.strip():
                continue
            left, bottom, right, top = tp.get_charbox(i, loose=True)
            if top - bottom < 2.5:  # hidden text, as the readers drop it
                continue
            chars.append((height - top, height - bottom, left, right, ch))
        tp.close()
        page.close()
    finally:
        pdf.close()
    chars.sort()
    bands: list[list] = []
    for c in chars:
        mid = (c[0] + c[1]) / 2
        for b in bands[-6:]:
            if abs(mid - b[0]) < 0.35 * (c[1] - c[0]):
                b[1].append(c)
                break
        else:
            bands.append([mid, [c]])
    rows = []
    for mid, cs in sorted(bands, key=lambda b: b[0]):
        cs.sort(key=lambda c: c[2])
        text, prev = "", None
        for top, bottom, left, right, ch in cs:
            if prev is not None and left - prev > 0.2 * (bottom - top):
                text += " "
            text += ch
            prev = right
        rows.append(Row(mid, text))
    return rows


@dataclass
class Ref:
    key: list[str]  # what one chunk line must hold, in order (["Net sales 32,765 31,657"])
    header: list[str]  # what the row's chunk must also hold (years, column names)
    title: str  # ... and its title ("" when the page shows none)
    figures: list[str]


def filing_refs(rows: list[Row]) -> list[Ref]:
    """Financial rows of a filing page: a label, then two or more figures (not all years) and nothing else."""
    out = []
    for i, r in enumerate(rows):
        toks = [t for t in r.text.split() if t not in ("$", "%")]
        j = len(toks)
        while j > 0 and _FIGURE.match(toks[j - 1]):
            j -= 1
        figures = toks[j:]
        if j == 0 or len(figures) < 2 or all(_YEAR.match(t) or not re.search(r"\d", t) for t in figures):
            continue  # no label, one figure, or a row of years (a column header)
        label = toks[:j]
        if not any(re.search(r"[A-Za-z]{2}", t) for t in label) or len(label) > 16:
            continue
        header: list[str] = []
        title = ""
        for above in reversed(rows[:i]):
            years = [m.group(1) for t in above.text.split() for m in [_YEAR.match(t)] if m]
            if not header and len(years) >= 2 and not any(_FIGURE.match(t) and not _YEAR.match(t)
                                                          for t in above.text.split()):
                header = years
            if _STATEMENT.search(above.text) and len(above.text) <= 120 and not re.search(r"\d{3},", above.text):
                title = above.text
                break
        out.append(Ref(key=[" ".join(toks)], header=header, title=title, figures=toks[j:]))
    return out


def dot_refs(rows: list[Row]) -> list[Ref]:
    """KPI rows with a value: from the type (Target/Actual) on; header = the "Description Type ..."
    row above, title = the "KPI ..." row above."""
    out = []
    for i, r in enumerate(rows):
        toks = r.text.split()
        j = next((k for k, t in enumerate(toks) if t in ("Target", "Actual")), None)
        if j is None or not any(re.search(r"\d", t) for t in toks[j + 1:]):
            continue
        header = next((a.text.split() for a in reversed(rows[:i]) if a.text.startswith("Description")), [])
        title = next((a.text for a in reversed(rows[:i]) if re.match(r"KPI\s*\d", a.text)), "")
        out.append(Ref(key=[" ".join(toks[j:])], header=header, title=title, figures=[]))
    return out


# ------------------------------------------------------------------ checks on what was indexed


def holder(chunks, parts: list[str]):
    """The first chunk with a line holding ``parts`` in order (compared squashed), else ``None``."""
    keys = [squash(p) for p in parts]
    for c in chunks:
        for line in c.text.split("\n"):
            s, pos = squash(line), 0
            for k in keys:
                pos = s.find(k, pos)
                if pos < 0:
                    break
                pos += len(k)
            else:
                return c
    return None


def in_chunk(chunk, text: str) -> bool:
    return squash(text) in squash(chunk.text + " " + " ".join(chunk.heading_path))


def score(refs: list[tuple[Ref, list]], answer_figures: set[str] | None = None) -> dict:
    """Fractions of rows kept, of rows with a header kept with them, of rows with a title kept."""
    kept = head = titled = n_head = n_title = ans = n_ans = 0
    for ref, chunks in refs:
        c = holder(chunks, ref.key)
        kept += c is not None
        if ref.header:
            n_head += 1
            head += c is not None and all(in_chunk(c, h) for h in ref.header)
        if ref.title:
            n_title += 1
            titled += c is not None and in_chunk(c, ref.title)
        if answer_figures and any(squash(f).strip("()") in answer_figures for f in ref.figures):
            n_ans += 1
            ans += c is not None
    n = max(1, len(refs))
    return {"rows": len(refs), "row": kept / n, "header": head / max(1, n_head), "n_header": n_head,
            "title": titled / max(1, n_title), "n_title": n_title, "answer_rows": n_ans,
            "answer_row": ans / max(1, n_ans)}


def answer_figures(answers: list[str]) -> set[str]:
    """A gold answer's numbers as a filing prints them ("$1577.00" → "1,577")."""
    out = set()
    for a in answers:
        for m in re.finditer(r"\d[\d,]*(?:\.\d+)?", a):
            v = float(m.group().replace(",", ""))
            out.update({m.group(), f"{v:,.0f}" if v == int(v) else f"{v:,.2f}"})
    return out


# ------------------------------------------------------------------ the run


def open_collection(workdir: Path, name: str, reader: str):
    from pdfqa import Collection

    return Collection.open(workdir / f"{name}-{reader}", create=True, embedder=EMBEDDER, chunk_tokens=CHUNK_TOKENS,
                           reader=reader)


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readers", default=",".join(READERS))
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks" / "out" / "readers"))
    ap.add_argument("--filings", default=",".join(FILINGS), help="financebench_dev files (default: the six)")
    ap.add_argument("--no-gov", action="store_true", help="leave out the DOT report and the ja_gov papers")
    ap.add_argument("--json")
    args = ap.parse_args()
    print("command:", "python " + " ".join(shlex.quote(a) for a in sys.argv))
    print("machine:", machine())
    from pdfqa.errors import PdfqaError
    from pdfqa.evaluation import runner
    from pdfqa.evaluation.qa import load_qa
    from pdfqa.pdf.reader import require_reader

    readers = []
    for r in args.readers.split(","):
        try:
            require_reader(r)
            readers.append(r)
        except PdfqaError as e:
            print(f"{r}: not measured: {e}")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    timings_path = workdir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    filings = args.filings.split(",")
    files = [("fb", FB / "pdfs" / f) for f in filings]
    if not args.no_gov:
        files += [("gov", DOT)] + [("gov", p) for p in sorted(JA.glob("*.pdf"))]
    cols = {(s, r): open_collection(workdir, s, r) for s in ("fb", "gov") for r in readers}

    # 1. read, interleaved
    for i, (s, path) in enumerate(files):
        order = readers[i % len(readers):] + readers[:i % len(readers)]
        for r in order:
            key = f"{r}/{path.name}"
            col = cols[(s, r)]
            if key in timings and col.store.document(path.name) is not None:
                continue
            col.remove(path.name)  # read again: its time was not recorded
            load = loadavg()
            rep = col.index([path], progress=False)
            f = rep.files[0]
            if f.status == "failed":
                print(f"  {r} {path.name}: failed: {f.error}")
                continue
            timings[key] = {"read_s": rep.stage_seconds["read"], "pages": f.pages, "chunks": f.chunks,
                            "load": load}
            timings_path.write_text(json.dumps(timings, indent=1))
            print(f"  read {path.name} with {r}: {rep.stage_seconds['read']:.1f} s, {f.pages} pages, "
                  f"{f.chunks} chunks (load {load:.1f})", flush=True)
    results: dict = {"machine": machine(), "readers": readers, "speed": {}, "structure": {}, "retrieval": {}}
    print("\n## reading speed (s/page over all files; ratio to pdfium over the same files)")
    print("| reader | pages | s/page | × pdfium | chunks | load avg (min–max) |\n|---|---|---|---|---|---|")
    for r in readers:
        names = [p.name for _, p in files if f"{r}/{p.name}" in timings and f"pdfium/{p.name}" in timings]
        t = [timings[f"{r}/{n}"] for n in names]
        base = sum(timings[f"pdfium/{n}"]["read_s"] for n in names)
        pages = sum(x["pages"] for x in t)
        secs = sum(x["read_s"] for x in t)
        loads = [x["load"] for x in t]
        results["speed"][r] = {"pages": pages, "s_per_page": secs / max(1, pages), "x_pdfium": secs / max(1e-9, base)}
        print(f"| {r} | {pages} | {secs / max(1, pages):.3f} | {secs / max(1e-9, base):.1f} | "
              f"{sum(x['chunks'] for x in t)} | {min(loads, default=0):.1f}–{max(loads, default=0):.1f} |")

    # 2. structure
    items = [it for it in load_qa(FB / "qa.jsonl") if set(it.doc_ids) <= set(filings)]
    gold = sorted({p for it in items for p in it.pages})
    figures_of = {}
    for it in items:
        for p in it.pages:
            figures_of.setdefault(p, set()).update(answer_figures(it.answers))
    fb_refs = {p: filing_refs(visual_rows(FB / "pdfs" / p[0], p[1])) for p in gold}
    dot = {} if args.no_gov else {n: dot_refs(visual_rows(DOT, n)) for n in range(9, 83)}
    ja_tables = [] if args.no_gov else JA_TABLES
    print(f"\n## table structure ({len(gold)} gold pages of {len(items)} questions: "
          f"{sum(len(v) for v in fb_refs.values())} financial rows; DOT: {sum(len(v) for v in dot.values())} KPI "
          f"rows on pages 9-82; ja_gov: {sum(len(t[4]) for t in ja_tables)} rows of {len(ja_tables)} 表 tables)")
    print("| reader | filings: row / header / title / answer rows | DOT: row / header / title | ja_gov: row / header / title |")
    print("|---|---|---|---|")
    for r in readers:
        fbc, govc = cols[("fb", r)], cols[("gov", r)]
        fb_s = score([(ref, fbc.chunks(doc, page)) for (doc, page), refs in fb_refs.items() for ref in refs],
                     {squash(f) for fs in figures_of.values() for f in fs})
        dot_s = score([(ref, govc.chunks(DOT.name, n)) for n, refs in dot.items() for ref in refs])
        ja = [(Ref(key=[label, start], header=header, title=title, figures=[]), govc.chunks(f, page))
              for f, page, title, header, rows in ja_tables for label, start in rows]
        ja_s = score(ja)
        results["structure"][r] = {"filings": fb_s, "dot": dot_s, "ja_gov": ja_s}
        print(f"| {r} | {fb_s['row']:.2f} / {fb_s['header']:.2f} / {fb_s['title']:.2f} / {fb_s['answer_row']:.2f} "
              f"(n={fb_s['rows']}/{fb_s['n_header']}/{fb_s['n_title']}/{fb_s['answer_rows']}) | "
              f"{dot_s['row']:.2f} / {dot_s['header']:.2f} / {dot_s['title']:.2f} | "
              f"{ja_s['row']:.2f} / {ja_s['header']:.2f} / {ja_s['title']:.2f} |")

    # 3. retrieval
    specs = ["bm25", "bm25+page-bm25"]
    print(f"\n## retrieval on the filings ({len(items)} questions, {len(filings)} filings in each reader's collection)")
    print("| reader | " + " | ".join(f"{s} page-hit@5 / doc-hit@5" for s in specs) + " |")
    print("|---|" + "---|" * len(specs))
    for r in readers:
        run = runner.evaluate(cols[("fb", r)], items, specs, progress=False)
        m = {res["retriever"]: res["metrics"] for res in run["results"]}
        results["retrieval"][r] = m
        print(f"| {r} | " + " | ".join(f"{m[s]['page_hit@5']:.3f} / {m[s]['doc_hit@5']:.3f}" for s in specs) + " |")
    print("\nmachine at the end:", machine())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    for c in cols.values():
        c.close()


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.0f} s")
