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

    return f"tesseract {tesserocr.tesseract_version().split()[1]} {languages} psm3 v2"


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


def _recognize(api, osd, gray, languages: str, timeout_ms: int, fallback=None, vertical=None) -> dict:
    """OCR one grey image (numpy H×W uint8) in a helper process; the upright result, or a rotated
    one when the upright text is poor and the orientation detector is confident. When ``api``'s
    languages read the page poorly, it is read again with ``fallback`` (jpn+eng: an English page in a
    Japanese document) and, for Japanese, with ``vertical`` (jpn_vert: the horizontal model reads
    vertical Japanese as garbage, CER 0.98 vs 0.02 measured); the best-supported reading wins."""
    import numpy as np

    t = time.perf_counter()
    res = _read(api, gray, timeout_ms)
    for alt_api in (a for a in (fallback, vertical) if a is not None):
        if res.get("error") is not None or res["conf"] >= ROTATION_CHECK_BELOW:
            break
        if alt_api is vertical and not (languages.startswith("jpn") or _CJK_RE.search(res["text"])):
            break
        alt = _read(alt_api, gray, timeout_ms)
        if alt.get("error") is None and alt["conf"] * alt["chars"] > res["conf"] * res["chars"]:
            res, api = alt, alt_api
    res["rotation"] = 0
    if res.get("error") is None and res["conf"] < ROTATION_CHECK_BELOW:
        from PIL import Image

        osd.SetImage(Image.fromarray(gray))
        found = osd.DetectOrientationScript() or {}
        deg = int(found.get("orient_deg") or 0)
        if deg and found.get("orient_conf", 0) >= 2.0:
            turned = np.ascontiguousarray(np.rot90(gray, k=deg // 90))
            alt = _read(api, turned, timeout_ms)
            if alt.get("error") is None and alt["conf"] * alt["chars"] > res["conf"] * res["chars"]:
                h, w = turned.shape
                alt["words"] = [[tx, c, *_unrotate(box, deg, w, h)] for tx, c, *box in alt["words"]]
                res, res["rotation"] = alt, deg
    res["size"] = [int(gray.shape[1]), int(gray.shape[0])]
    res["seconds"] = round(time.perf_counter() - t, 3)
    return res


def _unrotate(box: list[int], deg: int, w: int, h: int) -> list[int]:
    """A box in an image turned counter-clockwise by ``deg`` (``np.rot90``; turned size w×h) → the same
    box in the original image."""
    x0, y0, x1, y1 = box
    for _ in range(deg // 90):  # undo one 90° turn at a time: turned (x, y) came from original (h - y, x)
        x0, y0, x1, y1 = h - y1, x0, h - y0, x1
        w, h = h, w
    return [x0, y0, x1, y1]


def _read(api, gray, timeout_ms: int) -> dict:
    import tesserocr
    from PIL import Image

    api.SetImage(Image.fromarray(gray))
    if not api.Recognize(timeout=timeout_ms):
        return {"error": f"timed out (Tesseract stopped after {timeout_ms / 1000:.0f}s)"}
    lines, words = [], []
    total = weighted = 0.0
    for level in (tesserocr.RIL.TEXTLINE, tesserocr.RIL.WORD):
        for r in tesserocr.iterate_level(api.GetIterator(), level):
            text = (r.GetUTF8Text(level) or "").strip()
            box = r.BoundingBox(level)
            if not (text and box):
                continue
            conf = r.Confidence(level) / 100
            if level == tesserocr.RIL.TEXTLINE:
                row = (r.RowAttributes() or {}).get("row_height") or (box[3] - box[1])  # font size, from the baselines
                lines.append([text, round(conf, 3), *box, round(float(row), 1)])
            else:
                words.append([text, round(conf, 3), *box])
                total += len(text)
                weighted += conf * len(text)
    return {"lines": lines, "words": words, "conf": round(weighted / total, 4) if total else 0.0, "chars": int(total),
            "text": "".join(w[0] for w in words)}


def helper_main() -> None:
    """A helper process: requests ``[8-byte length][JSON {languages, width, height, timeout_ms}]
    [8-byte length][grey pixels]`` on stdin, one JSON answer per request on stdout."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # one page per core: no OpenMP threads inside Tesseract
    import numpy as np
    import tesserocr

    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol
    path = tessdata_dir()
    apis: dict[str, object] = {}
    osd = tesserocr.PyTessBaseAPI(path=path, lang="osd", psm=tesserocr.PSM.OSD_ONLY)
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        req = json.loads(inp.read(struct.unpack(">Q", head)[0]))
        n = struct.unpack(">Q", inp.read(8))[0]
        pixels = inp.read(n)
        try:
            for lang in filter(None, (req["languages"], req.get("fallback"), req.get("vertical"))):
                if lang not in apis:
                    apis[lang] = tesserocr.PyTessBaseAPI(path=path, lang=lang, psm=tesserocr.PSM.AUTO)
            gray = np.frombuffer(pixels, dtype=np.uint8).reshape(req["height"], req["width"])
            res = _recognize(apis[req["languages"]], osd, gray, req["languages"], int(req["timeout_ms"]),
                             apis.get(req.get("fallback")), apis.get(req.get("vertical")))
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

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # the helper exits at end of input
            self.proc.wait(timeout=5)
        except Exception:
            self.kill()


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
        self.helpers = [h for h in self.helpers if h.proc.poll() is None or h.task is not None]
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
        page.lines, page.skip_reason = [], "blank page (OCR found no text)"
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
