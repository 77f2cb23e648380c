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
    """NFKC; dot leaders of contents pages dropped (a row of 60 dots is not text anyone searches for)."""
    return _LEADERS.sub(" ", unicodedata.normalize("NFKC", text))


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
    """(grey array, text layer, points per pixel) of page ``index`` (0-based)."""
    import pypdfium2 as pdfium

    from pdfqa.pdf.ocr import render_gray

    pdf = pdfium.PdfDocument(str(path))
    pg = pdf[index]
    gray, s = render_gray(pg, dpi)
    tp = pg.get_textpage()
    text = tp.get_text_range()
    tp.close()
    pg.close()
    pdf.close()
    return gray, text, s


class Engines:
    """``tesserocr`` (jpn+eng on every page), ``tesserocr-auto`` (what pdfqa does by default: the set's
    own language, jpn or eng, with jpn+eng for pages it reads poorly), ``tesseract-cli`` (jpn+eng)."""

    def __init__(self, languages: str):
        import tesserocr

        from pdfqa.pdf.ocr import tessdata_dir

        self.languages = languages
        self.apis = {lang: tesserocr.PyTessBaseAPI(path=tessdata_dir(), lang=lang, psm=tesserocr.PSM.AUTO)
                     for lang in {languages, "jpn", "eng", "jpn+eng"}}
        self.osd = tesserocr.PyTessBaseAPI(path=tessdata_dir(), lang="osd", psm=tesserocr.PSM.OSD_ONLY)
        try:
            from rapidocr_onnxruntime import RapidOCR

            self.rapid = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
        except Exception:  # noqa: BLE001 - optional candidate
            self.rapid = None

    def tesserocr(self, gray, s, lang=None) -> str:
        from pdfqa.documents import Page
        from pdfqa.pdf.ocr import _recognize, apply_result

        lang = lang or self.languages
        fallback = self.apis["jpn+eng"] if lang != "jpn+eng" else None
        res = _recognize(self.apis[lang], self.osd, gray, lang, 300_000, fallback)
        page = Page(number=1, label=None, width=gray.shape[1] * s, height=gray.shape[0] * s, skip_reason="x")
        apply_result(page, res, s)
        return page.text

    def run(self, name: str, gray, s, set_lang: str) -> str:
        if name == "tesserocr-auto":
            return self.tesserocr(gray, s, {"ja": "jpn", "en": "eng"}[set_lang])
        return getattr(self, name.replace("tesseract-", ""))(gray, s)

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
    names = ["tesserocr", "tesserocr-auto", "tesseract-cli"] + (["rapidocr"] if eng.rapid is not None else [])
    rows: dict[tuple, list] = {}
    # the scanned brochure against its ground truth
    import pypdfium2 as pdfium

    from pdfqa.pdf.ocr import render_gray

    truth = (PDFS / "scanned" / "ocrmypdf_linn.groundtruth.txt").read_text()
    pdf = pdfium.PdfDocument(str(PDFS / "scanned" / "ocrmypdf_linn.pdf"))
    for dpi in args.dpi:
        gray, s = render_gray(pdf[0], dpi)
        for name in names:
            if name in ("tesseract-cli", "rapidocr") and dpi != 150:
                continue
            t = cpu_seconds()
            text = eng.run(name, gray, s, "en")
            rows.setdefault(("scanned_linn", dpi, name), []).append(scores(text, truth, cpu_seconds() - t))
    for set_name, (lang, files) in CER_SETS.items():
        for f in files:
            for i in page_ids(f):
                for dpi in args.dpi:
                    gray, ref, s = render(f, i, dpi)
                    if len("".join(ref.split())) < 20:
                        continue
                    for name in names:
                        if name in ("tesseract-cli", "rapidocr") and dpi != 150:
                            continue  # the other engines at the default resolution only (time)
                        t = cpu_seconds()
                        text = eng.run(name, gray, s, lang)
                        rows.setdefault((set_name, dpi, name), []).append(scores(text, ref, cpu_seconds() - t))
                print(f"  {set_name} {f.name} p{i + 1} done", file=sys.stderr, flush=True)
    print(f"\n## CER/WER (`{' '.join(map(shlex.quote, sys.argv))}`)\n{machine()}\n")
    print("CER/WER: in the text layer's reading order; order-free: multiset of characters/words (see bag_error)\n")
    print("| set | dpi | engine | pages | CER | CER order-free | WER | WER order-free | CPU s/page |")
    print("|---|---|---|---|---|---|---|---|---|")
    out = []
    for (set_name, dpi, name), vals in sorted(rows.items()):
        m = [statistics.mean(v[k] for v in vals) for k in range(5)]
        latin = CER_SETS.get(set_name, ("en",))[0] == "en"
        w = f"{m[2]:.3f} | {m[3]:.3f}" if latin else "– | –"
        print(f"| {set_name} | {dpi} | {name} | {len(vals)} | {m[0]:.3f} | {m[1]:.3f} | {w} | {m[4]:.2f} |")
        out.append({"set": set_name, "dpi": dpi, "engine": name, "pages": len(vals), "cer": m[0], "cer_free": m[1],
                    "wer": m[2], "wer_free": m[3], "s_per_page": m[4]})
    Path(args.out, "cer.json").write_text(json.dumps(out, indent=1))


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


def scores(text: str, ref: str, seconds: float) -> tuple:
    return cer(text, ref), cer_free(text, ref), wer(text, ref), wer_free(text, ref), seconds


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
