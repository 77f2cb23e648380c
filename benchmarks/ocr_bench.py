"""OCR benchmark (issue 16): character/word error rates, pages/s, retrieval on image-only copies.

Parts (each prints its table and the exact command):

- ``cer``: pages of text PDFs (ja_gov, en_slides, ja_slides_garbled, layout) rasterized at 100/150/200/300
  dpi, OCR'd by each engine, compared with the page's own text layer (PDFium's text, whitespace removed
  for CER; words for WER on Latin-script sets); plus the scanned brochure against
  ``scanned/ocrmypdf_linn.groundtruth.txt``. Engines: ``tesserocr`` (pdfqa's path: the text as indexed,
  low-confidence lines dropped), ``tesseract-cli`` (the same Tesseract through pytesseract, one process
  per page), ``rapidocr`` (rapidocr-onnxruntime's bundled PP-OCRv4 models, where importable). One core,
  pages interleaved across engines; seconds per page as measured in the same run.
- ``throughput``: an image-only A4 copy (150 dpi) OCR'd by pdfqa's helper pool with 1 worker and with
  one per core, cache off, interleaved; pages/s.
- ``ingest``: a 30-page image-only handout (A4, 150 dpi) indexed with OCR vs its text version.
- ``retrieval``: ja_gov and en_slides rasterized whole (150 dpi), indexed (OCR auto) next to the text
  versions; synthetic questions from the text versions (``pdfqa qa-generate``, extractive cloze); R@5 by
  page and by document, copies as a fraction of the originals.

Run: ``python benchmarks/ocr_bench.py --part cer --part throughput --part ingest --part retrieval``
(``--out DIR`` for the work files; default ``benchmarks/out/ocr``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

DATA = Path(os.environ.get("PDFQA_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PDFS = DATA / "pdfs"
# two pages per file (the second page and one from the middle): body text, tables, slides, columns
CER_SETS = {
    "ja_gov": ("ja", sorted((PDFS / "ja_gov").glob("*.pdf"))),
    "en_slides": ("en", sorted((PDFS / "en_slides").glob("*.pdf"))),
    "ja_slides_garbled": ("ja", sorted((PDFS / "ja_slides_garbled").glob("*.pdf"))),
    "layout": ("en", [PDFS / "layout" / "pypdf_multicolumn.pdf", PDFS / "layout" / "pypdf_GeoTopo-komprimiert_de_lecture_notes.pdf"]),
}


_LEADERS = re.compile(r"[.．·・…‥_]{3,}")


def norm(text: str) -> str:
    """NFKC; dot leaders of contents pages dropped (a row of 60 dots is not text anyone searches for);
    PDFium's mark for a hyphen at a line break (U+FFFE) read as the hyphen it shows."""
    return _LEADERS.sub(" ", unicodedata.normalize("NFKC", text.replace("\ufffe", "-")))


def cer(hyp: str, ref: str) -> float:
    """Character error rate, whitespace ignored, in the text layer's reading order."""
    from rapidfuzz.distance import Levenshtein

    h, r = "".join(norm(hyp).split()), "".join(norm(ref).split())
    return Levenshtein.distance(h, r) / max(1, len(r))


def wer(hyp: str, ref: str) -> float:
    from rapidfuzz.distance import Levenshtein

    h, r = norm(hyp).split(), norm(ref).split()
    return Levenshtein.distance(h, r) / max(1, len(r))


def bag_error(hyp, ref) -> float:
    """Order-independent error rate (as ocrevalUAtion's "order independent" WER): the larger of the
    missed and the extra items, counted as multisets, over the reference's items. It is not hurt
    when OCR reads a slide's sidebar after its body instead of before (the text layer's order)."""
    from collections import Counter

    h, r = Counter(hyp), Counter(ref)
    missed, extra = sum((r - h).values()), sum((h - r).values())
    return max(missed, extra) / max(1, sum(r.values()))


def cer_free(hyp: str, ref: str) -> float:
    return bag_error("".join(norm(hyp).split()), "".join(norm(ref).split()))


def wer_free(hyp: str, ref: str) -> float:
    return bag_error(norm(hyp).split(), norm(ref).split())


def page_ids(path: Path) -> list[int]:
    import pypdfium2 as pdfium

    n = len(pdfium.PdfDocument(str(path)))
    return sorted({min(1, n - 1), n // 2})


def render(path: Path, index: int, dpi: int):
    """(grey array, text layer, points per pixel, visible characters) of page ``index`` (0-based): the
    characters are ``(char, x, y)``, the centre of each in points of the page as rendered."""
    import pypdfium2 as pdfium

    from pdfqa.pdf.ocr import render_gray

    pdf = pdfium.PdfDocument(str(path))
    pg = pdf[index]
    gray, s = render_gray(pg, dpi)
    tp = pg.get_textpage()
    text = tp.get_text_range()
    chars = visible_chars(pg, tp, gray, s)
    tp.close()
    pg.close()
    pdf.close()
    return gray, text, s, chars


def visible_chars(pg, tp, gray, s) -> list[tuple[str, float, float]]:
    """The text layer's characters that are drawn on the rendered page (their box shows some contrast):
    text hidden behind an image, white on white or outside the crop box is in the text layer but not in
    the picture, and no OCR can read it."""
    import ctypes

    import pypdfium2.raw as raw

    h, w = gray.shape
    dx, dy = ctypes.c_int(), ctypes.c_int()

    def device(x: float, y: float) -> tuple[int, int]:  # page space -> pixels of the render (its /Rotate applied)
        raw.FPDF_PageToDevice(pg.raw, 0, 0, w, h, 0, x, y, ctypes.byref(dx), ctypes.byref(dy))
        return dx.value, dy.value

    out = []
    for i in range(tp.count_chars()):
        ch = tp.get_text_range(i, 1)
        if not ch.strip():
            continue
        l, b, r, t = tp.get_charbox(i)
        (xa, ya), (xb, yb) = device(l, b), device(r, t)
        x0, x1, y0, y1 = max(0, min(xa, xb)), min(w, max(xa, xb) + 1), max(0, min(ya, yb)), min(h, max(ya, yb) + 1)
        box = gray[y0:y1, x0:x1]
        if box.size and int(box.max()) - int(box.min()) >= 64:
            out.append((ch, (x0 + x1) / 2 * s, (y0 + y1) / 2 * s))
    return out


def line_cer(lines, chars) -> float:
    """CER by position: each visible text-layer character goes to the OCR line whose box holds its centre
    (the smallest such box), each line is compared with its characters (edit distance, text-layer order),
    and characters no line holds count as missed. The order in which OCR puts its lines (a slide's
    sidebar before or after its body) does not count; the order within a line and every character does."""
    from rapidfuzz.distance import Levenshtein

    def squash(t: str) -> str:
        return "".join(norm(t).split())

    buckets: dict[int, list[str]] = {k: [] for k in range(len(lines))}
    missed = []
    for ch, x, y in chars:
        best = None
        for k, ln in enumerate(lines):
            pad = 0.25 * (ln.y1 - ln.y0)
            if ln.x0 - pad <= x <= ln.x1 + pad and ln.y0 - pad <= y <= ln.y1 + pad:
                area = (ln.x1 - ln.x0) * (ln.y1 - ln.y0)
                if best is None or area < best[0]:
                    best = (area, k)
        (buckets[best[1]] if best else missed).append(ch)
    errors = len(squash("".join(missed)))
    errors += sum(Levenshtein.distance(squash(ln.text), squash("".join(buckets[k]))) for k, ln in enumerate(lines))
    return errors / max(1, len(squash("".join(ch for ch, _, _ in chars))))


class Engines:
    """``tesserocr`` (pdfqa's path with jpn+eng on every page), ``tesserocr-auto`` (what pdfqa does by
    default: the set's own language, jpn or eng, with jpn+eng for pages it reads poorly),
    ``tesserocr-plain`` (Tesseract's own text for the page, jpn+eng, none of pdfqa's steps: what the
    leader erasing, the one-column contents pages and the confidence filter add), ``tesseract-cli``
    (jpn+eng through pytesseract), ``rapidocr``."""

    def __init__(self, languages: str):
        import tesserocr

        from pdfqa.pdf.ocr import TessApis, tessdata_dir

        self.languages = languages
        self.apis = TessApis()  # pdfqa's own engines (by languages and segmentation mode)
        self.plain = tesserocr.PyTessBaseAPI(path=tessdata_dir(), lang=languages, psm=tesserocr.PSM.AUTO)
        try:
            from rapidocr_onnxruntime import RapidOCR

            self.rapid = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
        except Exception:  # noqa: BLE001 - optional candidate
            self.rapid = None

    def tesserocr(self, gray, s, lang=None) -> str:
        """pdfqa's path (leaders erased, contents pages as one column, fallbacks, rotation) with ``lang``."""
        from pdfqa.documents import Page
        from pdfqa.pdf.ocr import BOTH, _recognize, apply_result

        lang = lang or self.languages
        res = _recognize(self.apis, gray, lang, 300_000, BOTH if lang != BOTH else None)
        page = Page(number=1, label=None, width=gray.shape[1] * s, height=gray.shape[0] * s, skip_reason="x")
        apply_result(page, res, s)
        return page.text, page.lines

    def plain_tesserocr(self, gray, s) -> str:
        """Tesseract as it comes (``languages``, automatic segmentation): the text of every line."""
        from PIL import Image

        self.plain.SetImage(Image.fromarray(gray))
        return self.plain.GetUTF8Text()

    def run(self, name: str, gray, s, set_lang: str) -> tuple[str, list | None]:
        """(text, lines with their boxes in points, or None for the engines outside pdfqa)."""
        if name == "tesserocr-auto":
            return self.tesserocr(gray, s, {"ja": "jpn", "en": "eng"}[set_lang])
        if name == "tesserocr":
            return self.tesserocr(gray, s)
        if name == "tesserocr-plain":
            return self.plain_tesserocr(gray, s), None
        return getattr(self, name.replace("tesseract-", ""))(gray, s), None

    def cli(self, gray, s) -> str:
        import pytesseract
        from PIL import Image

        return pytesseract.image_to_string(Image.fromarray(gray), lang=self.languages, config="--psm 3")

    def rapidocr(self, gray, s) -> str:
        import numpy as np

        res, _ = self.rapid(np.stack([gray] * 3, axis=-1))
        return "\n".join(r[1] for r in res or [])


def part_cer(args) -> None:
    os.environ["OMP_THREAD_LIMIT"] = "1"
    eng = Engines(args.languages)
    names = ["tesserocr", "tesserocr-auto", "tesserocr-plain", "tesseract-cli"] + (["rapidocr"] if eng.rapid is not None else [])
    rows: dict[tuple, list] = {}
    pages: list[dict] = []
    # the scanned brochure against its ground truth (no character positions: no line CER)
    import pypdfium2 as pdfium

    from pdfqa.pdf.ocr import render_gray

    truth = (PDFS / "scanned" / "ocrmypdf_linn.groundtruth.txt").read_text()
    pdf = pdfium.PdfDocument(str(PDFS / "scanned" / "ocrmypdf_linn.pdf"))
    for dpi in args.dpi:
        gray, s = render_gray(pdf[0], dpi)
        for name in names:
            if name in ("tesserocr-plain", "tesseract-cli", "rapidocr") and dpi != 150:
                continue
            t = cpu_seconds()
            text, _ = eng.run(name, gray, s, "en")
            rows.setdefault(("scanned_linn", dpi, name), []).append(scores(text, None, truth, None, cpu_seconds() - t))
    for set_name, (lang, files) in CER_SETS.items():
        for f in files:
            for i in page_ids(f):
                for dpi in args.dpi:
                    gray, ref, s, chars = render(f, i, dpi)
                    if len("".join(ref.split())) < 20:
                        continue
                    for name in names:
                        if name in ("tesserocr-plain", "tesseract-cli", "rapidocr") and dpi != 150:
                            continue  # the other engines at the default resolution only (time)
                        t = cpu_seconds()
                        text, lines = eng.run(name, gray, s, lang)
                        sc = scores(text, lines, ref, chars, cpu_seconds() - t)
                        rows.setdefault((set_name, dpi, name), []).append(sc)
                        pages.append({"set": set_name, "file": f.name, "page": i + 1, "dpi": dpi, "engine": name,
                                      "cer": sc[0], "cer_line": sc[1], "cer_free": sc[2], "wer": sc[3],
                                      "wer_free": sc[4], "cpu_s": sc[5]})
                print(f"  {set_name} {f.name} p{i + 1} done", file=sys.stderr, flush=True)
    print(f"\n## CER/WER (`{' '.join(map(shlex.quote, sys.argv))}`)\n{machine()}\n")
    print("CER/WER: in the text layer's reading order; by line: each OCR line against the visible text-layer "
          "characters inside its box (line_cer); order-free: multiset of characters/words (bag_error). "
          "Error rates over all the set's characters (pages weighted by length); CPU s: mean per page.\n")
    print("| set | dpi | engine | pages | CER | CER by line | CER order-free | WER | WER order-free | CPU s/page |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    out = []

    def fmt(x):
        return "–" if x is None else f"{x:.3f}"

    for (set_name, dpi, name), vals in sorted(rows.items()):
        # error rates weighted by each page's characters (a corpus CER: errors / characters), CPU s per page
        n = [len("".join(norm(v[6]).split())) for v in vals]
        m = [None if any(v[k] is None for v in vals) else sum(v[k] * c for v, c in zip(vals, n)) / max(1, sum(n))
             for k in range(5)] + [statistics.mean(v[5] for v in vals)]
        latin = CER_SETS.get(set_name, ("en",))[0] == "en"
        w = f"{fmt(m[3])} | {fmt(m[4])}" if latin else "– | –"
        print(f"| {set_name} | {dpi} | {name} | {len(vals)} | {fmt(m[0])} | {fmt(m[1])} | {fmt(m[2])} | {w} | {m[5]:.2f} |")
        out.append({"set": set_name, "dpi": dpi, "engine": name, "pages": len(vals), "cer": m[0], "cer_line": m[1],
                    "cer_free": m[2], "wer": m[3], "wer_free": m[4], "s_per_page": m[5]})
    Path(args.out, "cer.json").write_text(json.dumps(out, indent=1))
    Path(args.out, "cer_pages.json").write_text(json.dumps(pages, indent=1))


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the Tesseract CLI): on a machine shared by
    a dozen jobs, wall time says more about the neighbours than about the engine."""
    import resource

    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def helper_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) the given live processes have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def scores(text: str, lines, ref: str, chars, seconds: float) -> tuple:
    """(CER, CER by line or None, CER order-free, WER, WER order-free, CPU seconds, reference)."""
    by_line = line_cer(lines, chars) if lines is not None and chars is not None else None
    return cer(text, ref), by_line, cer_free(text, ref), wer(text, ref), wer_free(text, ref), seconds, ref


def image_only_copy(src: Path, dst: Path, dpi: int = 150, pages: list[int] | None = None) -> Path:
    """``src`` (or its ``pages``, 0-based) rasterized at ``dpi`` into an image-only PDF of the same page size."""
    import pypdfium2 as pdfium

    from pdfqa.pdf.ocr import render_gray
    from PIL import Image

    pdf = pdfium.PdfDocument(str(src))
    imgs = []
    for i in pages if pages is not None else range(len(pdf)):
        gray, _ = render_gray(pdf[i], dpi)
        imgs.append(Image.fromarray(gray))
    dst.parent.mkdir(parents=True, exist_ok=True)
    imgs[0].save(dst, save_all=True, append_images=imgs[1:], resolution=float(dpi))
    return dst


def part_throughput(args) -> None:
    from pdfqa.pdf import read_pdf
    from pdfqa.pdf.ocr import OcrSettings, workers

    src = PDFS / "ja_gov" / "cio_dp2021_06_att_data_skill_framework.pdf"
    copy = image_only_copy(src, Path(args.out) / "throughput" / src.name, 150, list(range(8)))
    cores = len(os.sched_getaffinity(0))
    results: dict[int, list[tuple[float, float]]] = {1: [], cores: []}
    for rep in range(args.reps):
        for n in (1, cores):
            pool = workers(n)
            pool._alive()  # start the helpers outside the timing
            read_pdf(copy, ocr=OcrSettings(mode="auto", workers=n, cache=False))  # warm: models loaded
            pids = [h.proc.pid for h in pool.helpers]
            c0, t = helper_cpu(pids), time.perf_counter()
            content = read_pdf(copy, ocr=OcrSettings(mode="auto", workers=n, cache=False))
            dt, cpu = time.perf_counter() - t, helper_cpu(pids) - c0
            results[n].append((len(content.pages) / dt, cpu / len(content.pages)))  # cache off: all OCR'd
    print(f"\n## OCR pages/s, A4 at 150 dpi, languages auto (`{' '.join(map(shlex.quote, sys.argv))}`)\n{machine()}\n")
    print("| helpers | pages/s wall (each rep) | CPU s/page in the helpers (each rep) | pages/s on 2 idle cores = 2 / CPU s |")
    print("|---|---|---|---|")
    for n, v in results.items():
        cpu = statistics.median(x[1] for x in v)
        print(f"| {n} | {', '.join(f'{x[0]:.2f}' for x in v)} | {', '.join(f'{x[1]:.2f}' for x in v)} | {2 / cpu:.2f} |")


def part_ingest(args) -> None:
    from pdfqa import Collection
    from pdfqa.pdf.ocr import OcrSettings

    a = PDFS / "ja_gov" / "cio_dp2021_06_att_data_skill_framework.pdf"
    b = PDFS / "ja_gov" / "cio_dp2020_03_zero_trust.pdf"
    work = Path(args.out) / "ingest"
    import pypdf

    text_version = work / "handout_text.pdf"
    w = pypdf.PdfWriter()
    for src, n in ((a, 21), (b, 9)):
        r = pypdf.PdfReader(str(src))
        for i in range(n):
            w.add_page(r.pages[i])
    work.mkdir(parents=True, exist_ok=True)
    with open(text_version, "wb") as f:
        w.write(f)
    scan = image_only_copy(text_version, work / "handout_scan.pdf", 150)
    rows = []
    for rep in range(args.reps):
        for label, pdf in (("text version", text_version), ("image-only, OCR", scan)):
            with tempfile.TemporaryDirectory() as d:
                with Collection.open(d, create=True) as col:
                    t = time.perf_counter()
                    rep_ = col.index([pdf], progress=False, ocr=OcrSettings(mode="auto", cache=False))
                    dt = time.perf_counter() - t
                f = rep_.files[0]
                rows.append((label, rep, dt, f.pages, f.chunks, f.ocr_pages, rep_.stage_seconds.get("read", 0)))
    print(f"\n## Ingesting a 30-page handout (`{' '.join(map(shlex.quote, sys.argv))}`)\n{machine()}\n")
    print("| version | rep | seconds | pages | chunks | OCR'd pages | read+OCR s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]} | {r[4]} | {r[5]} | {r[6]:.1f} |")


def part_retrieval(args) -> None:
    from pdfqa import Collection
    from pdfqa.evaluation.synthetic import generate_questions

    work = Path(args.out) / "retrieval"
    print(f"\n## Retrieval on image-only copies (`{' '.join(map(shlex.quote, sys.argv))}`)\n{machine()}\n")
    print("| set | questions | text R@5 (page) | copy R@5 (page) | ratio | text R@5 (doc) | copy R@5 (doc) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for set_name in ("ja_gov", "en_slides"):
        files = sorted((PDFS / set_name).glob("*.pdf"))
        copies = [image_only_copy(f, work / set_name / "copies" / f.name, 150) for f in files
                  if not (work / set_name / "copies" / f.name).exists()] or sorted((work / set_name / "copies").glob("*.pdf"))
        cols = {}
        for label, paths in (("text", files), ("copy", copies)):
            d = work / set_name / f"col-{label}"
            col = Collection.open(d, create=True)
            col.index(paths, progress=False)
            cols[label] = col
        qa = list(generate_questions(cols["text"], "extractive", args.questions, seed=0))
        (work / set_name / "qa.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in qa))
        score = {}
        for label, col in cols.items():
            page_hit = doc_hit = 0
            for q in qa:
                hits = col.search(q["question"], k=5)
                gold = {(p["doc"], p["page"]) for p in q["pages"]}
                page_hit += any(any((h.chunk.doc, p) in gold for p in h.chunk.pages) for h in hits)
                doc_hit += any(h.chunk.doc in q["doc_ids"] for h in hits)
            score[label] = (page_hit / max(1, len(qa)), doc_hit / max(1, len(qa)))
        t, c = score["text"], score["copy"]
        print(f"| {set_name} | {len(qa)} | {t[0]:.3f} | {c[0]:.3f} | {c[0] / max(t[0], 1e-9):.2f} | {t[1]:.3f} | "
              f"{c[1]:.3f} | {c[1] / max(t[1], 1e-9):.2f} |", flush=True)
        for col in cols.values():
            col.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", action="append", choices=["cer", "throughput", "ingest", "retrieval"])
    ap.add_argument("--dpi", type=int, action="append")
    ap.add_argument("--languages", default="jpn+eng", help="for the cer part: one setting for all pages")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "ocr"))
    args = ap.parse_args()
    args.dpi = args.dpi or [100, 150, 200, 300]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for part in args.part or ["cer", "throughput", "ingest", "retrieval"]:
        globals()[f"part_{part}"](args)


if __name__ == "__main__":
    main()
