"""OCR for pages whose text layer is missing or unusable: Tesseract 5 (Japanese, vertical Japanese,
English) through ``tesserocr``, in helper processes, cached by the page image's content hash.

Which pages: with ``mode="auto"`` the pages the text-quality check rejected (no text layer, garbled
text); ``"always"`` every page; ``"never"`` none. Each page is rendered by PDFium in the calling
thread (PDFium is not thread-safe), OCR'd by one of ``workers`` helper processes (all cores by
default) with a time limit per page, and its text goes through the same quality check as a text
layer. A page that is blank indexes nothing; a page the engine crashes on or that takes longer than
the limit is reported in ``Page.skip_reason`` and the file goes on.

What an OCR'd page carries: ``Page.ocr`` (True), ``Page.ocr_confidence`` (0..1, Tesseract's word
confidences weighted by characters), ``Page.lines`` (one :class:`~pdfqa.documents.Line` per text
line, in the reading order of Tesseract's layout analysis, coordinates in points of the upright
page) and ``Page.ocr_words`` (``[text, confidence, x0, y0, x1, y1]`` in points of the page as
PDFium renders it, for highlighting).

Why Tesseract through tesserocr: measured against the Tesseract CLI (pytesseract) and RapidOCR's
bundled models on rasterized pages of ja_gov, en_slides, ja_slides_garbled and layout (see
``benchmarks/ocr_bench.py`` and ``benchmarks/README.md``): same text as the CLI without a model load
per page; RapidOCR's package ships only a Chinese model (no kana) and was several times slower.

>>> from pdfqa.pdf.ocr import OcrSettings, ocr_unavailable
>>> OcrSettings(mode="auto").mode
'auto'
>>> msg = ocr_unavailable()          # None when tesserocr and the language data are installed
>>> msg is None or "tesseract-ocr-jpn" in msg
True
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import select
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..documents import Line, Page
from ..errors import PdfqaError
from .quality import assess_page_text

log = logging.getLogger(__name__)

OCR_MODES = ("auto", "always", "never")
#: ``auto``: per document, ``jpn`` for Japanese, ``eng`` for English, ``jpn+eng`` for mixed or unknown
#: (decided from the document's text pages, else from its first OCR'd page); a page read poorly with
#: one language is read again with ``jpn+eng``. Measured: one model per page is ~2x faster than both,
#: at the same CER on its own language (benchmarks/README.md)
DEFAULT_LANGUAGES = "auto"
BOTH = "jpn+eng"
#: pages without a scanned image are rendered at this resolution, chosen by CER and pages/s on rasterized
#: ja_gov / en_slides / layout pages (benchmarks/README.md); a scan is rendered at its own resolution
#: (a 300-dpi brochure at 150 dpi runs its columns together: CER 0.38 vs 0.011), at most MAX_SCAN_DPI
DEFAULT_DPI = 150
MAX_SCAN_DPI = 300
#: a page rendered larger than this (a poster, a huge page box) is scaled down: memory stays bounded
MAX_PIXELS = 16_000_000
DEFAULT_TIMEOUT_S = 120.0
#: pages whose OCR confidence is below this are reported as unusable rather than indexed
MIN_PAGE_CONFIDENCE = 0.45
#: OCR lines below this confidence are dropped (text "read" in photos and diagrams)
MIN_LINE_CONFIDENCE = 0.30
#: share of dark pixels below which a page is blank (scanner noise stays under it)
BLANK_INK = 0.0005
#: an upright OCR below this confidence asks the orientation detector whether the page is rotated
ROTATION_CHECK_BELOW = 0.70
INSTALL_HINT = ("OCR needs Tesseract with Japanese and English data and the tesserocr binding: "
                "apt-get install tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert tesseract-ocr-eng "
                "tesseract-ocr-osd, and pip install 'pdfqa[ocr]' (tesserocr)")
_TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                  "/usr/share/tessdata", "/usr/local/share/tessdata", "/opt/homebrew/share/tessdata")


#: Tesseract's Japanese model puts spaces between characters (補佐 官 等); Japanese has none
_CJK = "[\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uff60]"
_CJK_GAP = re.compile(f"(?<={_CJK})\\s+(?={_CJK})")
_CJK_RE = re.compile(_CJK)


def join_line(text: str) -> str:
    """One OCR line as text: whitespace collapsed, and dropped between Japanese characters.

    >>> join_line("政府 CIO 補佐 官 等 ディ スカ ッ シ ョ ン")
    '政府 CIO 補佐官等ディスカッション'
    """
    return _CJK_GAP.sub("", " ".join(text.split()))


class OcrUnavailableError(PdfqaError):
    """OCR was asked for (``always``) but the engine or its language data is missing."""


@dataclass
class OcrSettings:
    """How pages are OCR'd. ``mode``: ``auto`` (pages without a usable text layer), ``always`` or
    ``never``; ``languages``: ``auto`` (see :data:`DEFAULT_LANGUAGES`) or Tesseract's ``-l`` (``jpn+eng``,
    ``eng``, ``jpn+jpn_vert``...)."""

    mode: str = "auto"
    languages: str = DEFAULT_LANGUAGES
    dpi: int = DEFAULT_DPI
    timeout_s: float = DEFAULT_TIMEOUT_S
    workers: int = 0  # 0: one per core
    cache: bool = True
    #: called with (document, pages done, pages to OCR) after each page (progress in the CLI and the web app)
    on_page: Callable[[str, int, int], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in OCR_MODES:
            from ..errors import UnknownComponentError

            raise UnknownComponentError("OCR mode", self.mode, list(OCR_MODES))


def tessdata_dir() -> str | None:
    """The Tesseract language-data folder: ``$TESSDATA_PREFIX`` or Debian's and other usual places."""
    env = os.environ.get("TESSDATA_PREFIX")
    for d in ([env] if env else []) + list(_TESSDATA_DIRS):
        if d and Path(d, "eng.traineddata").exists():
            return d
    return None


def ocr_unavailable(languages: str = DEFAULT_LANGUAGES) -> str | None:
    """``None`` when OCR can run with ``languages``, else a one-line message naming the packages."""
    try:
        import tesserocr  # noqa: F401
    except ImportError:
        return f"tesserocr is not installed. {INSTALL_HINT}"
    d = tessdata_dir()
    if d is None:
        return f"no Tesseract language data found (set TESSDATA_PREFIX). {INSTALL_HINT}"
    wanted = (BOTH if languages == "auto" else languages).split("+") + ["osd"]
    missing = [lang for lang in wanted if not Path(d, f"{lang}.traineddata").exists()]
    if missing:
        return f"Tesseract language data missing in {d}: {', '.join(missing)}. {INSTALL_HINT}"
    return None


def engine_signature(languages: str) -> str:
    """What the cached OCR text depends on besides the image: engine version and languages."""
    import tesserocr

    return f"tesseract {tesserocr.tesseract_version().split()[1]} {languages} psm3 v3"


# ------------------------------------------------------------------ the helper processes


def detect_languages(text: str) -> str | None:
    """Tesseract languages for a document whose text looks like ``text``: ``jpn``, ``eng``, ``jpn+eng``
    (mixed), or ``None`` when there is too little text to tell.

    >>> detect_languages("ゼロトラストの概念は 2010 年に Forrester Research の John Kindervag 氏によって提唱された。" * 2)
    'jpn'
    >>> detect_languages("Byte pair encoding merges the most frequent pair of symbols.")
    'eng'
    """
    from .quality import script_profile

    prof = script_profile(text)
    letters = sum(prof.values())
    if letters < 40:
        return None
    cjk, latin = prof.get("cjk", 0) / letters, prof.get("latin", 0) / letters
    if cjk >= 0.3:
        return "jpn"
    if cjk == 0 and latin >= 0.95:
        return "eng"
    return BOTH


class TessApis:
    """Tesseract engines of one process by (languages, page segmentation mode), created on first use
    (each holds its model: ~0.1 s and ~50 MB to load), and the orientation detector."""

    def __init__(self, path: str | None = None):
        import tesserocr

        self.path = path or tessdata_dir()
        self._apis: dict[tuple[str, int], object] = {}
        self.osd = tesserocr.PyTessBaseAPI(path=self.path, lang="osd", psm=tesserocr.PSM.OSD_ONLY)

    def __call__(self, languages: str, psm: int = 3):
        import tesserocr

        if (languages, psm) not in self._apis:
            self._apis[languages, psm] = tesserocr.PyTessBaseAPI(path=self.path, lang=languages, psm=psm)
        return self._apis[languages, psm]


#: page segmentation: ``PSM.AUTO`` (3) finds columns and text boxes; a page with this many rows of leader
#: dots is a contents page or a form, read as one column of lines (``PSM.SINGLE_COLUMN``, 4): with the
#: dots erased, AUTO splits its page numbers off into a column of their own and reads it as garbage
#: (a ja_gov contents page: CER 0.245 with AUTO, 0.034 as one column)
LEADER_ROWS_FOR_COLUMN = 3


def _recognize(apis: TessApis, gray, languages: str, timeout_ms: int, fallback: str | None = None,
               vertical: str | None = None) -> dict:
    """OCR one grey image (numpy H×W uint8) in a helper process; the upright result, or a rotated
    one when the upright text is poor and the orientation detector is confident. Leader dots are
    erased first (:func:`erase_leaders`). When ``languages`` read the page poorly, it is read again with
    ``fallback`` (jpn+eng: an English page in a Japanese document) and, for Japanese, with ``vertical``
    (jpn_vert: the horizontal model reads vertical Japanese as garbage, CER 0.98 vs 0.02 measured);
    the best-supported reading wins."""
    import numpy as np

    t = time.perf_counter()
    gray, leader_rows = erase_leaders(erase_table_rules(gray), count=True)
    psm = 4 if leader_rows >= LEADER_ROWS_FOR_COLUMN else 3
    lang = languages
    res = _read(apis(lang, psm), gray, timeout_ms)
    for alt_lang in (a for a in (fallback, vertical) if a is not None):
        if res.get("error") is not None or res["conf"] >= ROTATION_CHECK_BELOW:
            break
        if alt_lang == vertical and not (languages.startswith("jpn") or _CJK_RE.search(res["text"])):
            break
        alt = _read(apis(alt_lang, 3 if alt_lang == vertical else psm), gray, timeout_ms)
        if alt.get("error") is None and alt["conf"] * alt["chars"] > res["conf"] * res["chars"]:
            res, lang = alt, alt_lang
    res["rotation"] = 0
    if res.get("error") is None and res["conf"] < ROTATION_CHECK_BELOW:
        from PIL import Image

        apis.osd.SetImage(Image.fromarray(gray))
        found = apis.osd.DetectOrientationScript() or {}
        deg = int(found.get("orient_deg") or 0)
        if deg and found.get("orient_conf", 0) >= 2.0:
            turned = np.ascontiguousarray(np.rot90(gray, k=deg // 90))
            alt = _read(apis(lang, 3), turned, timeout_ms)
            if alt.get("error") is None and alt["conf"] * alt["chars"] > res["conf"] * res["chars"]:
                h, w = turned.shape
                alt["words"] = [[tx, c, *_unrotate(box, deg, w, h)] for tx, c, *box in alt["words"]]
                res, res["rotation"] = alt, deg
    res["size"] = [int(gray.shape[1]), int(gray.shape[0])]
    res["seconds"] = round(time.perf_counter() - t, 3)
    return res


def erase_leaders(gray, count: bool = False):
    """``gray`` with rows of leader dots (``目次 ........ 3``) painted white. Tesseract 5 drops whole
    lines that carry a long run of dots, or reads the dots as ``ーー``/``eeSeSe`` (measured: a ja_gov
    contents page lost 20 of its 33 lines; CER 0.37 → see benchmarks/README.md). A leader dot is a
    connected blob at most a 250th of the page width across, in a run of at least six on one baseline
    with even, empty gaps; dakuten, 。 and ・ sit alone or in pairs, so text is untouched (dotted
    lines and fills in figures go too). With ``count``: (image, number of contents-page leader rows:
    runs of at least 8 dots, a text line apart, ending at one right margin).

    >>> import numpy as np
    >>> page = np.full((40, 200), 255, np.uint8)
    >>> page[10:30, 5:20] = 0                      # a glyph
    >>> for x in range(30, 190, 8): page[27:29, x:x + 2] = 0   # 20 leader dots
    >>> out = erase_leaders(page)
    >>> int((out[20:35, 25:200] < 128).sum()), int((out[10:30, 5:20] < 128).sum())
    (0, 300)
    """
    import numpy as np
    from scipy import ndimage

    ink = gray < 128
    labels, n = ndimage.label(ink, structure=np.ones((3, 3), bool))
    if n < 5:
        return (gray, 0) if count else gray
    slices = ndimage.find_objects(labels)
    hs = np.array([s[0].stop - s[0].start for s in slices])
    ws = np.array([s[1].stop - s[1].start for s in slices])
    # a leader dot is at most a 250th of the page width (3 px at 150 dpi on A4, 6 at 300 dpi) and square-ish;
    # relative to the text it cannot be told: on a contents page most blobs are dots
    dot = max(2, round(gray.shape[1] / 250))
    cand = np.flatnonzero((hs <= dot) & (ws <= dot))
    if len(cand) < 5:
        return (gray, 0) if count else gray
    cy = np.array([(slices[i][0].start + slices[i][0].stop) / 2 for i in cand])
    cx = np.array([(slices[i][1].start + slices[i][1].stop) / 2 for i in cand])
    # rows: dots whose centres lie within 1.5 px of the previous one's (sorted by height), then left to right
    by_y = np.argsort(cy, kind="stable")
    row_id = np.concatenate([[0], np.cumsum(np.diff(cy[by_y]) > 1.5)])
    order = by_y[np.lexsort((cx[by_y], row_id))]
    row_of = np.empty(len(cand), int)
    row_of[by_y] = row_id
    out = gray.copy()
    run: list[int] = []
    runs: list[tuple[float, float, int]] = []  # (height, right end, dots) of each erased run

    def flush() -> None:
        if len(run) >= 6:
            runs.append((float(cy[run[0]]), float(cx[run[-1]]), len(run)))
            for i in run:  # the dot's box and a pixel around it: a resampled scan's dots have grey halos
                ys, xs = slices[cand[i]]
                out[max(0, ys.start - 1):ys.stop + 1, max(0, xs.start - 1):xs.stop + 1] = 255
        run.clear()

    for k in order:
        if run:
            prev = run[-1]
            gap = cx[k] - cx[prev]
            regular = len(run) < 2 or abs(gap - (cx[prev] - cx[run[-2]])) <= max(1.5, 0.2 * gap)
            # nothing else between two leader dots; i-dots and full stops in a line of text have letters between
            y = int(cy[k])
            between = ink[max(0, y - 2 * dot):y + 2 * dot + 1, slices[cand[prev]][1].stop:slices[cand[k]][1].start]
            if row_of[k] == row_of[prev] and 0 < gap <= 5 * dot + 6 and regular and not between.any():
                run.append(k)
                continue
            flush()
        run.append(k)
    flush()
    if not count:
        return out
    # contents-page rows: long runs, a text line apart (not the rows of a dotted fill or a dashed box's
    # two edges), ending at one right margin (before the page numbers)
    long = [r for r in runs if r[2] >= 8]
    apart = [r for k, r in enumerate(long)
             if all(abs(r[0] - o[0]) >= 4 * dot for j, o in enumerate(long) if j != k)]
    if not apart:
        return out, 0
    right = float(np.median([r[1] for r in apart]))
    return out, sum(abs(r[1] - right) <= 0.02 * gray.shape[1] for r in apart)


def erase_table_rules(gray):
    """``gray`` with the ruling lines of a table painted white (unchanged when the page has no ruled
    table: fewer than three vertical rules or two horizontal ones; a framed box keeps its frame).
    With the rules in place Tesseract ran a table's rows across its cells (``チーム運リーダーシップ目標を``);
    without them each column is a text block of its own (a ja_gov table page: CER by line 0.53 → 0.07).
    Light text on a dark page is left alone (its background would look like one big rule).

    >>> import numpy as np
    >>> page = np.full((600, 600), 255, np.uint8)
    >>> for x in (10, 200, 400, 590): page[10:590, x] = 0       # a 3-column grid
    >>> for y in (10, 300, 590): page[y, 10:591] = 0
    >>> page[60:80, 40:60] = 0                                  # text in a cell
    >>> out = erase_table_rules(page)
    >>> int((out < 128).sum()), int((out[60:80, 40:60] < 128).sum())
    (400, 400)
    """
    import numpy as np
    from scipy import ndimage

    if float(np.median(gray)) < 128:
        return gray
    h, w = gray.shape
    ink = gray < 160
    # rules: straight runs of ink longer than a 12th of the page (an inch on A4): no glyph stroke is
    horizontal = _long_runs(ink, max(20, w // 12))
    if ndimage.label(horizontal)[1] < 2:  # most pages: no rules, no second pass
        return gray
    vertical = _long_runs(ink.T, max(20, h // 12)).T
    if ndimage.label(vertical)[1] < 3:
        return gray
    out = gray.copy()
    out[ndimage.binary_dilation(horizontal | vertical)] = 255
    return out


def _long_runs(mask, length: int):
    """The pixels of ``mask`` (2-D bool) in a left-to-right run of at least ``length``: a binary opening
    with a 1×length line, in time linear in the pixels (scipy's opening costs length× more: 0.6 s a page)."""
    import numpy as np

    h, w = mask.shape
    if w < length:
        return np.zeros_like(mask)
    c = np.zeros((h, w + 1), np.int32)
    np.cumsum(mask, axis=1, out=c[:, 1:])
    full = (c[:, length:] - c[:, :-length]) == length  # window [j, j + length) all ink, j = 0 .. w - length
    f = np.zeros((h, w - length + 2), np.int32)
    np.cumsum(full, axis=1, out=f[:, 1:])
    # pixel x is covered when some full window starts in [x - length + 1, x]
    x = np.arange(w)
    lo, hi = np.clip(x - length + 1, 0, w - length + 1), np.clip(x + 1, 0, w - length + 1)
    return (f[:, hi] - f[:, lo]) > 0


def _unrotate(box: list[int], deg: int, w: int, h: int) -> list[int]:
    """A box in an image turned counter-clockwise by ``deg`` (``np.rot90``; turned size w×h) → the same
    box in the original image."""
    x0, y0, x1, y1 = box
    for _ in range(deg // 90):  # undo one 90° turn at a time: turned (x, y) came from original (h - y, x)
        x0, y0, x1, y1 = h - y1, x0, h - y0, x1
        w, h = h, w
    return [x0, y0, x1, y1]


def _read(api, gray, timeout_ms: int) -> dict:
    """Tesseract's reading of one image: lines (in its layout order) built from their words, the words
    with boxes, and the character-weighted confidence. Leader dots and rules (``......`` in a contents
    page, underlines) come out of Tesseract as "words" a few pixels tall and many times as wide
    (``ーー``, ``eeSeSe``, ``…….…``): they are dropped, so they neither pollute the text nor drag the
    line's confidence under :data:`MIN_LINE_CONFIDENCE` (which lost whole contents lines)."""
    import tesserocr
    from PIL import Image

    api.SetImage(Image.fromarray(gray))
    if not api.Recognize(timeout=timeout_ms):
        return {"error": f"timed out (Tesseract stopped after {timeout_ms / 1000:.0f}s)"}
    L, W = tesserocr.RIL.TEXTLINE, tesserocr.RIL.WORD
    rows: list[list] = []  # [row height, words] per text line
    for r in tesserocr.iterate_level(api.GetIterator(), W):
        if r.IsAtBeginningOf(L) or not rows:
            box = r.BoundingBox(L)
            row = (r.RowAttributes() or {}).get("row_height") or ((box[3] - box[1]) if box else 0)  # font size
            rows.append([float(row), []])
        text, box = (r.GetUTF8Text(W) or "").strip(), r.BoundingBox(W)
        if text and box:
            rows[-1][1].append([text, round(r.Confidence(W) / 100, 3), *box])
    heights = sorted(b[5] - b[3] for _, ws in rows for b in ws)
    median_h = heights[len(heights) // 2] if heights else 0
    lines, words = [], []
    total = weighted = 0.0
    for row, ws in rows:
        kept = [w for w in ws if not _is_rule(w, median_h)]
        if not kept:
            continue
        n = sum(len(w[0]) for w in kept)
        conf = sum(w[1] * len(w[0]) for w in kept) / n
        box = [min(w[2] for w in kept), min(w[3] for w in kept), max(w[4] for w in kept), max(w[5] for w in kept)]
        lines.append([" ".join(w[0] for w in kept), round(conf, 3), *box, round(row or (box[3] - box[1]), 1)])
        words += kept
        total += n
        weighted += conf * n
    return {"lines": lines, "words": words, "conf": round(weighted / total, 4) if total else 0.0, "chars": int(total),
            "text": "".join(w[0] for w in words)}


def _is_rule(word: list, median_h: float) -> bool:
    """A "word" that is a row of leader dots or a rule: flat (under 40% of the page's median word
    height, at most 6 px) and wider than 2.5 median word heights. A real ``ー`` or ``-`` is as flat
    but about one character wide."""
    _, _, x0, y0, x1, y1 = word
    h = y1 - y0
    return h <= max(3, min(6, 0.4 * median_h)) and (x1 - x0) >= max(4 * h, 2.5 * median_h)


def helper_main() -> None:
    """A helper process: requests ``[8-byte length][JSON {languages, width, height, timeout_ms}]
    [8-byte length][grey pixels]`` on stdin, one JSON answer per request on stdout."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # one page per core: no OpenMP threads inside Tesseract
    import numpy as np

    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol
    apis = TessApis()
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        req = json.loads(inp.read(struct.unpack(">Q", head)[0]))
        n = struct.unpack(">Q", inp.read(8))[0]
        pixels = inp.read(n)
        try:
            gray = np.frombuffer(pixels, dtype=np.uint8).reshape(req["height"], req["width"])
            res = _recognize(apis, gray, req["languages"], int(req["timeout_ms"]), req.get("fallback"),
                             req.get("vertical"))
        except Exception as e:  # an engine error on one page is that page's answer
            res = {"error": f"OCR failed ({type(e).__name__}: {str(e)[:160]})"}
        data = json.dumps(res, ensure_ascii=False).encode()
        out.write(struct.pack(">Q", len(data)) + data)
        out.flush()


class _Helper:
    def __init__(self):
        src = str(Path(__file__).resolve().parents[2])  # the directory holding the pdfqa package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p),
               "OMP_THREAD_LIMIT": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", "from pdfqa.pdf.ocr import helper_main; helper_main()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        self.fd = self.proc.stdout.fileno()
        self.task: tuple | None = None  # (key, deadline) of the page it works on
        self.buf = bytearray()

    def send(self, header: dict, pixels: bytes) -> None:
        data = json.dumps(header).encode()
        self.proc.stdin.write(struct.pack(">Q", len(data)) + data + struct.pack(">Q", len(pixels)))
        self.proc.stdin.write(pixels)
        self.proc.stdin.flush()

    def receive(self) -> dict | None:
        """Read what is there; the answer once complete, ``None`` while incomplete. Raises EOFError
        when the process died."""
        block = os.read(self.fd, 1 << 20)
        if not block:
            raise EOFError
        self.buf += block
        if len(self.buf) >= 8:
            n = struct.unpack(">Q", self.buf[:8])[0]
            if len(self.buf) >= 8 + n:
                res = json.loads(bytes(self.buf[8:8 + n]))
                del self.buf[:8 + n]
                return res
        return None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:
            pass
        self._close_pipes()

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # the helper exits at end of input
            self.proc.wait(timeout=5)
        except Exception:
            self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except Exception:
                pass


class OcrWorkers:
    """``n`` helper processes, one page each at a time. A page that outlives its time limit gets its
    helper killed; a helper that dies (the engine crashed) is replaced; either way that page alone
    gets an error and the others go on."""

    def __init__(self, n: int = 0):
        self.n = max(1, n or cores())
        self.helpers: list[_Helper] = []
        self.pages_run = 0  # pages sent to Tesseract (cache hits and blank pages are not)
        self.lock = threading.Lock()  # one document at a time (the web app and the CLI index in one thread)

    def run(self, tasks: Iterator[tuple[object, dict, bytes]], timeout_s: float,
            on_result: Callable[[object, dict], None]) -> None:
        """Run ``(key, header, pixels)`` tasks (pulled lazily: at most ``n`` images are in memory) and
        call ``on_result(key, result)`` for each as it finishes (``result["error"]`` on failure)."""
        with self.lock:
            pending = iter(tasks)
            exhausted = False
            while True:
                idle = [h for h in self._alive() if h.task is None]
                while idle and not exhausted:
                    nxt = next(pending, None)
                    if nxt is None:
                        exhausted = True
                        break
                    key, header, pixels = nxt
                    h = idle.pop()
                    h.task = (key, time.monotonic() + timeout_s + 10)  # Tesseract stops itself at timeout_s
                    self.pages_run += 1
                    try:
                        h.send({**header, "timeout_ms": int(timeout_s * 1000)}, pixels)
                    except OSError:
                        self._fail(h, on_result, "the OCR engine crashed on this page (helper process died)")
                busy = [h for h in self.helpers if h.task is not None]
                if not busy:
                    if exhausted:
                        return
                    continue
                wait = max(0.0, min(h.task[1] for h in busy) - time.monotonic())
                ready, _, _ = select.select([h.fd for h in busy], [], [], min(wait, 1.0))
                for h in busy:
                    if h.fd in ready:
                        try:
                            res = h.receive()
                        except (EOFError, OSError, ValueError):
                            code = h.proc.poll()
                            self._fail(h, on_result, f"the OCR engine crashed on this page (exit {code})")
                            continue
                        if res is not None:
                            key, h.task = h.task[0], None
                            on_result(key, res)
                    elif time.monotonic() > h.task[1]:
                        self._fail(h, on_result, f"OCR took longer than {timeout_s:.0f}s (stopped)")

    def _alive(self) -> list[_Helper]:
        gone = [h for h in self.helpers if h.proc.poll() is not None and h.task is None]
        for h in gone:
            h.close()  # its pipes, not left to the garbage collector
        self.helpers = [h for h in self.helpers if h not in gone]
        while len(self.helpers) < self.n:
            self.helpers.append(_Helper())
        return self.helpers

    def _fail(self, h: _Helper, on_result, why: str) -> None:
        key = h.task[0] if h.task else None
        h.task = None
        h.kill()
        self.helpers.remove(h)
        if key is not None:
            on_result(key, {"error": why})

    def close(self) -> None:
        with self.lock:
            for h in self.helpers:
                h.close()
            self.helpers = []


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_workers: OcrWorkers | None = None
_workers_lock = threading.Lock()


def workers(n: int = 0) -> OcrWorkers:
    """The process-wide pool of ``n`` helpers (0: one per core), started on first use, stopped at exit."""
    global _workers
    with _workers_lock:
        if _workers is None or _workers.n != (n or cores()):
            if _workers is not None:
                _workers.close()
            _workers = OcrWorkers(n)
            import atexit

            atexit.register(_workers.close)
        return _workers


# ------------------------------------------------------------------ cache


class OcrCache:
    """OCR results by (page image hash, engine signature) in ``$PDFQA_CACHE/ocr/cache.sqlite``:
    re-indexing a file, the same scan in another collection or a re-upload costs no OCR."""

    def __init__(self, path: str | Path | None = None):
        if path is None:
            root = Path(os.environ.get("PDFQA_CACHE", Path.home() / ".cache" / "pdfqa"))
            path = root / "ocr" / "cache.sqlite"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS ocr (key TEXT PRIMARY KEY, result TEXT NOT NULL, created REAL)")

    def get(self, key: str) -> dict | None:
        row = self.db.execute("SELECT result FROM ocr WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, result: dict) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO ocr(key, result, created) VALUES (?,?,?)",
                            (key, json.dumps(result, ensure_ascii=False), time.time()))

    def close(self) -> None:
        self.db.close()


# ------------------------------------------------------------------ pages


def needs_ocr(page: Page, mode: str) -> bool:
    """Whether ``page`` is OCR'd under ``mode`` (``auto``: its text layer is missing or garbled)."""
    if mode == "always":
        return True
    return mode == "auto" and page.skip_reason is not None


def render_gray(pdf_page, dpi: float, max_pixels: int = MAX_PIXELS):
    """The page as PDFium draws it (its /Rotate applied), grey, at ``dpi`` (less when the page is so
    large that it would exceed ``max_pixels``); returns (H×W uint8 array, points per pixel)."""
    import numpy as np

    w_pt, h_pt = pdf_page.get_size()
    scale = dpi / 72.0
    if w_pt * h_pt * scale * scale > max_pixels:
        scale = (max_pixels / max(1.0, w_pt * h_pt)) ** 0.5
    bitmap = pdf_page.render(scale=scale, grayscale=True)
    arr = bitmap.to_numpy()
    if arr.ndim == 3:  # some PDFium builds hand grey bitmaps back as BGR(x)
        arr = arr[..., :3].mean(axis=2)
    return np.ascontiguousarray(arr, dtype=np.uint8), 1.0 / scale


def scan_dpi(pdf_page) -> float | None:
    """The resolution of the image that covers most of the page (a scan), ``None`` when there is none."""
    import pypdfium2 as pdfium

    w_pt, h_pt = pdf_page.get_size()
    best = None
    try:
        for obj in pdf_page.get_objects(filter=[pdfium.raw.FPDF_PAGEOBJ_IMAGE], max_depth=2):
            x0, y0, x1, y1 = obj.get_bounds()
            if (x1 - x0) * (y1 - y0) < 0.5 * w_pt * h_pt:
                continue
            px_w, px_h = obj.get_px_size()
            dpi = max(px_w / max(1e-3, (x1 - x0) / 72), px_h / max(1e-3, (y1 - y0) / 72))
            best = max(best or 0.0, dpi)
    except Exception:  # an odd image object must not cost the page its OCR
        return best
    return best


def ocr_dpi(pdf_page, dpi: int) -> float:
    """Render resolution for OCR: a scan's own resolution (not below ``dpi``, not above MAX_SCAN_DPI)."""
    native = scan_dpi(pdf_page)
    return min(max(native, dpi), MAX_SCAN_DPI) if native else dpi


def is_blank(gray) -> bool:
    """Almost no dark pixels: a blank (or blank-scanned) page."""
    return float((gray < 128).mean()) < BLANK_INK


def ocr_pages(path: str | Path, pages: list[Page], settings: OcrSettings, *, password: str | None = None) -> None:
    """OCR the pages of ``path`` that ``settings.mode`` selects, in place (see the module docstring)."""
    todo = [p for p in pages if needs_ocr(p, settings.mode)]
    if not todo:
        return
    why = ocr_unavailable(settings.languages)
    if why:
        if settings.mode == "always":
            raise OcrUnavailableError(why)
        for p in todo:  # auto: the text pages are indexed, these are reported
            p.skip_reason = f"{p.skip_reason.split(' (')[0]} (OCR unavailable: {why})"
        return
    import pypdfium2 as pdfium

    langs = settings.languages
    if langs == "auto":  # from the document's own text pages, else from its first OCR'd page (below)
        langs = detect_languages("\n".join(p.text for p in pages if p.skip_reason is None and not needs_ocr(p, settings.mode)))
    cache = OcrCache() if settings.cache else None
    scale_of: dict[int, float] = {}
    keys: dict[int, str] = {}
    done = 0
    by_number = {p.number: p for p in todo}

    def finish(number: int, res: dict) -> None:
        nonlocal done
        apply_result(by_number[number], res, scale_of[number], mode=settings.mode)
        if cache is not None and res.get("error") is None and number in keys:
            cache.put(keys[number], res)
        done += 1
        if settings.on_page:
            settings.on_page(Path(path).name, done, len(todo))

    pdf = pdfium.PdfDocument(str(path), password=password)
    try:
        def tasks(part: list[Page], lang: str):
            sig = engine_signature(lang)
            fallback = BOTH if settings.languages == "auto" and lang != BOTH else None
            vertical = "jpn_vert" if settings.languages == "auto" and Path(tessdata_dir(), "jpn_vert.traineddata").exists() \
                else None
            for p in part:
                pg = pdf[p.number - 1]
                try:
                    gray, scale_of[p.number] = render_gray(pg, ocr_dpi(pg, settings.dpi))
                finally:
                    pg.close()
                if is_blank(gray):
                    finish(p.number, {"blank": True})
                    continue
                key = hashlib.sha256(f"{sig} {fallback} {vertical}\0{gray.shape}\0".encode() + gray.tobytes()).hexdigest()
                keys[p.number] = key
                hit = cache.get(key) if cache is not None else None
                if hit is not None:
                    finish(p.number, hit)
                    continue
                yield p.number, {"languages": lang, "fallback": fallback, "vertical": vertical, "width": gray.shape[1],
                                 "height": gray.shape[0]}, gray.tobytes()

        pool = workers(settings.workers)
        rest = todo
        if langs is None:  # an image-only document: its first page, read with both, tells the language
            pool.run(tasks(todo[:1], BOTH), settings.timeout_s, finish)
            langs, rest = detect_languages(todo[0].text) or BOTH, todo[1:]
        pool.run(tasks(rest, langs), settings.timeout_s, finish)
    finally:
        pdf.close()
        if cache is not None:
            cache.close()


def apply_result(page: Page, res: dict, pt_per_px: float, *, mode: str = "auto") -> None:
    """Put an OCR result into ``page``: lines in reading order, words for highlighting, confidence;
    the quality check runs on the text, and a failed or empty result becomes the page's skip reason."""
    before = page.skip_reason
    if res.get("blank"):
        page.lines, page.skip_reason = [], "blank page"
        return
    if res.get("error"):
        if mode == "always" and before is None and page.lines:
            return  # the text layer stays: OCR was a second opinion
        page.skip_reason = f"{(before or 'OCR').split(' (')[0]} (OCR failed: {res['error']})"
        return
    lines = [ln for ln in res["lines"] if ln[1] >= MIN_LINE_CONFIDENCE]
    rot = int(res.get("rotation") or 0)
    w_px, h_px = res["size"]
    if rot in (90, 270):
        w_px, h_px = h_px, w_px
    s = pt_per_px
    # OCR row heights wobble by a few pixels from line to line; the chunker reads a line 15% larger than
    # the body as a heading, so lines within 25% of the page's median height get the median
    rows = sorted(ln[6] for ln in lines)
    median = rows[len(rows) // 2] if rows else 0.0
    new = [Line(text=join_line(t), size=round((median if row <= median * 1.25 else row) * s, 1),
                x0=x0 * s, y0=y0 * s, x1=x1 * s, y1=y1 * s)
           for t, _, x0, y0, x1, y1, row in lines]
    text = "\n".join(ln.text for ln in new)
    conf = float(res.get("conf") or 0.0)
    if not text.strip():
        if mode == "always" and before is None and page.lines:
            return
        page.lines, page.skip_reason = [], "OCR found no text"  # a summary keeps what comes before " ("
        return
    verdict = assess_page_text(text)
    if verdict is None and conf < MIN_PAGE_CONFIDENCE:
        verdict = f"OCR text unusable (confidence {conf:.2f} < {MIN_PAGE_CONFIDENCE})"
    elif verdict is not None:
        verdict = f"OCR text unusable: {verdict}"
    if verdict is not None:
        if mode == "always" and before is None and page.lines:
            return
        page.lines, page.skip_reason = [], verdict
        return
    page.lines, page.skip_reason = new, None
    page.ocr, page.ocr_confidence, page.ocr_rotation = True, round(conf, 3), rot
    page.ocr_words = [[t, c, round(x0 * s, 1), round(y0 * s, 1), round(x1 * s, 1), round(y1 * s, 1)]
                      for t, c, x0, y0, x1, y1 in res["words"]]
