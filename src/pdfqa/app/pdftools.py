"""PDF work for the web app that must not run in the server's threads: checking uploads and
rendering pages (pypdfium2 → PNG, with the quoted passage highlighted).

PDFium is not thread-safe, not even across independent documents: two threads calling into it at
once can crash the process or return wrong results. In the server process only the indexer thread
calls PDFium (through :meth:`pdfqa.Collection.index`); everything here runs in a small pool of
helper *processes* (:class:`PdfWorkers`), which also keeps a hostile upload that crashes or hangs
PDFium away from the server: the helper dies or is killed, the server answers with an error.

Functions named ``job_*`` run inside the helper processes; they import only the standard library,
pypdfium2 and Pillow.
"""
from __future__ import annotations

import io
import re
import struct
import threading
import unicodedata
from pathlib import Path

from ..pdf.reader import sniff_file_type

#: the highlight colour (RGBA) drawn over quoted passages
HIGHLIGHT = (255, 214, 0, 96)
HIGHLIGHT_EDGE = (230, 150, 0, 220)
MAX_RENDER_PX = 2400


class PdfJobError(Exception):
    """A helper job failed for a reason the user should see (``status`` is the HTTP status to answer)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------- file names


def safe_filename(name: str | None, *, max_chars: int = 120) -> str:
    """A file name that is safe to store: the last path component only (``../../evil.pdf`` →
    ``evil.pdf``), NFKC-normalised, no control characters, no leading dot, only word characters
    (any script), digits and ``. - _ ( ) [ ] +`` and spaces, always ending in ``.pdf``."""
    name = unicodedata.normalize("NFKC", name or "")
    name = name.replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"[^\w.\-()\[\]+ ]", "_", name)
    name = re.sub(r"\s+", " ", name)
    name = re.sub(r"_{2,}", "_", name).strip(" ._")
    stem, dot, ext = name.rpartition(".")
    if not dot or ext.lower() != "pdf":
        stem = name
    stem = stem.strip(" ._")[:max_chars].rstrip(" ._")
    while len(stem.encode("utf-8")) > 200:  # file systems limit names to 255 bytes
        stem = stem[:-1]
    return f"{stem or 'document'}.pdf"


# ---------------------------------------------------------------------- helper-process jobs


def _open(path: str):
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as e:
        code = getattr(e, "err_code", None)
        causes = {3: "corrupt PDF (data format error)", 4: "password-protected (a password is required)",
                  5: "unsupported security handler (encryption)", 6: "page not found or damaged"}
        raise PdfJobError(causes.get(code, f"cannot be opened as a PDF ({e})")) from None


def job_check_pdf(path: str, max_pages: int) -> dict:
    """Check an uploaded file by its content: a ``%PDF-`` header, opens in PDFium (not encrypted, not
    garbage), has 1..max_pages pages and its first page loads. Returns ``{"pages": n}``; raises
    :class:`PdfJobError` otherwise. The other pages are read by the indexer, which reports a damaged one
    in the document's status: loading every page here made the upload's reply wait for all of them
    (0.27 s for an 82-page deck on an idle machine, more under load)."""
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head:
        raise PdfJobError("empty file (0 bytes)")
    if b"%PDF-" not in head:
        raise PdfJobError(f"not a PDF: the content has no %PDF- header (it looks like {sniff_file_type(head)}); "
                          "files are checked by content, not by name", 415)
    pdf = _open(path)
    try:
        n = len(pdf)
        if n == 0:
            raise PdfJobError("the PDF has no pages")
        if n > max_pages:
            raise PdfJobError(f"too many pages ({n} > limit {max_pages}); split the file or ask for a higher limit")
        page = pdf[0]
        tp = page.get_textpage()
        tp.count_chars()
        tp.close()
        page.close()
        return {"pages": n}
    finally:
        pdf.close()


def _norm_chars(text: str) -> list[tuple[str, int]]:
    """(normalised character, index in ``text``) for the letters and digits of ``text``: NFKC,
    case-folded, everything else (spaces, line breaks, hyphens, punctuation) dropped, so a quote
    matches the page however the extraction broke lines or spaced CJK text."""
    out = []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKC", ch).casefold():
            if c.isalnum():
                out.append((c, i))
    return out


def find_spans(page_text: str, quote: str, *, min_len: int | None = None) -> tuple[list[int], float]:
    """Indices of ``page_text``'s characters that spell out ``quote`` (whitespace, punctuation and
    case ignored), and the share of the quote's letters found. The whole quote is tried first; else
    its longest pieces that occur on the page, in order (a quote running onto the next page, or
    text the extraction spelled differently, is highlighted where it matches)."""
    page = _norm_chars(page_text)
    q = "".join(c for c, _ in _norm_chars(quote))
    if not q or not page:
        return [], 0.0
    hay = "".join(c for c, _ in page)
    at = hay.find(q)
    if at >= 0:
        return [page[j][1] for j in range(at, at + len(q))], 1.0
    cjk = any(ord(c) > 0x2E80 for c in q)
    min_len = min_len or (4 if cjk else 10)
    found: list[int] = []
    matched, i, start = 0, 0, 0
    while i <= len(q) - min_len:
        if hay.find(q[i:i + min_len], start) < 0:
            i += 1
            continue
        lo, hi = min_len, len(q) - i  # longest piece starting at i that occurs after `start`
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if hay.find(q[i:i + mid], start) >= 0:
                lo = mid
            else:
                hi = mid - 1
        pos = hay.find(q[i:i + lo], start)
        found.extend(page[j][1] for j in range(pos, pos + lo))
        matched += lo
        start = pos + lo
        i += lo
    return found, matched / len(q)


def _line_boxes(boxes: list[tuple[int, int, int, int]]) -> list[list[int]]:
    """Merge character boxes (x0, y0, x1, y1 in pixels, top-left origin, reading order) into one box
    per run of characters on a line."""
    rects: list[list[int]] = []
    for x0, y0, x1, y1 in boxes:
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            continue
        if rects:
            cur = rects[-1]
            h = max(cur[3] - cur[1], y1 - y0)
            same_line = abs((cur[1] + cur[3]) / 2 - (y0 + y1) / 2) < 0.6 * h
            if same_line and x0 <= cur[2] + 2.5 * h and x1 >= cur[0] - h:
                cur[0], cur[1], cur[2], cur[3] = min(cur[0], x0), min(cur[1], y0), max(cur[2], x1), max(cur[3], y1)
                continue
        rects.append([x0, y0, x1, y1])
    return rects


def _page_text(tp) -> str:
    import pypdfium2.raw as pdfium_c

    n = tp.count_chars()
    return "".join(chr(pdfium_c.FPDFText_GetUnicode(tp.raw, i) or 0xFFFD) for i in range(n))


def _ocr_word_boxes(words: list[list], quote: str, scale: float) -> tuple[list[tuple[int, int, int, int]], float]:
    """Pixel boxes of the OCR words (``[text, conf, x0, y0, x1, y1]`` in points) that spell ``quote``."""
    text, owner = "", []
    for i, w in enumerate(words):
        text += w[0] + " "
        owner += [i] * (len(w[0]) + 1)
    idx, matched = find_spans(text, quote)
    hit = sorted({owner[j] for j in idx})
    return [tuple(int(round(v * scale)) for v in words[i][2:6]) for i in hit], matched


def job_render_page(path: str, page: int, scale: float, quote: str | None, ocr_words: list | None = None) -> dict:
    """Render page ``page`` (1-based) to PNG, with ``quote`` highlighted where it is found: in the text
    layer, or, for a page read by OCR, in its ``ocr_words`` (``[text, conf, x0, y0, x1, y1]``, points).

    Returns ``{"png": bytes, "pages", "page", "page_label", "width", "height", "boxes": [[x0, y0, x1, y1]]
    (pixels, top-left origin), "matched": share of the quote found, "drawn": whether boxes are drawn into
    the PNG}``.
    """
    import ctypes

    import pypdfium2.raw as pdfium_c

    pdf = _open(path)
    try:
        n = len(pdf)
        if not 1 <= page <= n:
            raise PdfJobError(f"page {page} does not exist (the document has {n} pages)", 404)
        label = pdf.get_page_label(page - 1) or None
        pg = pdf[page - 1]
        w_pt, h_pt = pg.get_size()
        scale = max(0.2, min(float(scale), MAX_RENDER_PX / max(w_pt, h_pt, 1.0)))
        bitmap = pg.render(scale=scale)
        width, height = bitmap.width, bitmap.height
        boxes: list[list[int]] = []
        matched = 0.0
        char_px: list[tuple[int, int, int, int]] = []
        if quote and ocr_words:
            char_px, matched = _ocr_word_boxes(ocr_words, quote, scale)
        elif quote:
            tp = pg.get_textpage()
            idx, matched = find_spans(_page_text(tp), quote)
            dx, dy = ctypes.c_int(), ctypes.c_int()

            def to_px(x: float, y: float) -> tuple[int, int]:
                pdfium_c.FPDF_PageToDevice(pg.raw, 0, 0, width, height, 0, x, y, ctypes.byref(dx), ctypes.byref(dy))
                return dx.value, dy.value

            for i in sorted(set(idx)):  # boxes in device space: rotated pages read left to right there
                left, bottom, right, top = tp.get_charbox(i)
                corners = (to_px(left, bottom), to_px(right, top), to_px(left, top), to_px(right, bottom))
                xs, ys = [c[0] for c in corners], [c[1] for c in corners]
                char_px.append((min(xs), min(ys), max(xs), max(ys)))
            tp.close()
        pad = 2
        for x0, y0, x1, y1 in _line_boxes(char_px):
            boxes.append([max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)])
        png, drawn = _encode_png(bitmap, boxes)
        pg.close()
        return {"png": png, "pages": n, "page": page, "page_label": label, "width": width, "height": height,
                "boxes": boxes, "matched": round(matched, 3), "drawn": drawn}
    finally:
        pdf.close()


def _encode_png(bitmap, boxes: list[list[int]]) -> tuple[bytes, bool]:
    """The page as PNG with the highlight boxes drawn in (Pillow, part of ``pdfqa[app]``)."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise PdfJobError("rendering pages needs Pillow: pip install 'pdfqa[app]'", 500) from None
    img = bitmap.to_pil().convert("RGB")
    if boxes:
        overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for x0, y0, x1, y1 in boxes:
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=HIGHLIGHT, outline=HIGHLIGHT_EDGE, width=2)
        img = Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue(), bool(boxes)


def job_ping() -> bool:
    import pypdfium2  # noqa: F401  (warm the import)

    return True


# ---------------------------------------------------------------------- the helper processes

JOBS = {"check": job_check_pdf, "render": job_render_page, "ping": job_ping}


def _encode(obj) -> bytes:
    """JSON for the helper protocol; bytes (rendered PNGs) travel as base64."""
    import base64
    import json

    def default(o):
        if isinstance(o, (bytes, bytearray)):
            return {"__bytes__": base64.b64encode(o).decode("ascii")}
        raise TypeError(f"cannot send {type(o).__name__} to a helper")

    return json.dumps(obj, default=default).encode()


def _decode(data: bytes):
    import base64
    import json

    return json.loads(data, object_hook=lambda d: base64.b64decode(d["__bytes__"]) if set(d) == {"__bytes__"} else d)


def helper_main() -> None:
    """A helper process: length-prefixed JSON ``[job, args]`` on stdin, ``[ok, value]`` on stdout."""
    import os
    import sys

    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by a library goes to stderr, not into the protocol
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        name, args = _decode(inp.read(struct.unpack(">Q", head)[0]))
        try:
            res = (True, JOBS[name](*args))
        except PdfJobError as e:
            res = (False, (str(e), e.status))
        except Exception as e:  # a parser error on a hostile file is an answer, not a crash
            res = (False, (f"cannot be processed ({type(e).__name__}: {str(e)[:200]})", 422))
        data = _encode(res)
        out.write(struct.pack(">Q", len(data)) + data)
        out.flush()


class _Helper:
    def __init__(self):
        import os
        import subprocess
        import sys

        src = str(Path(__file__).resolve().parents[2])  # the directory holding the pdfqa package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
        code = "from pdfqa.app.pdftools import helper_main; helper_main()"
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, close_fds=True)

    def call(self, name: str, args: tuple, timeout: float):
        import select
        import time

        data = _encode([name, list(args)])
        self.proc.stdin.write(struct.pack(">Q", len(data)) + data)
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()

        def read(n: int) -> bytes:
            buf = bytearray()
            while len(buf) < n:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise TimeoutError
                block = os_read(fd, n - len(buf))
                if not block:
                    raise EOFError
                buf += block
            return bytes(buf)

        n = struct.unpack(">Q", read(8))[0]
        ok, value = _decode(read(n))
        if not ok:
            raise PdfJobError(*value)
        return value

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
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except Exception:  # noqa: BLE001 - already closed or broken: nothing left to release
                pass


def os_read(fd: int, n: int) -> bytes:
    import os

    return os.read(fd, n)


class PdfWorkers:
    """Up to ``workers`` helper processes (started on demand with ``python -c``, so the server's
    ``__main__`` is never re-imported, and nothing is inherited from the server's threads).

    :meth:`call` runs a job with a time limit; a job that times out or kills its process (a hostile
    PDF crashing PDFium) gets that helper killed and raises :class:`PdfJobError`.
    """

    def __init__(self, workers: int = 2, timeout: float = 60.0):
        self.workers = max(1, workers)
        self.timeout = timeout
        self._slots = threading.Semaphore(self.workers)
        self._idle: list[_Helper] = []
        self._lock = threading.Lock()
        self._closed = False

    def call(self, fn, *args, timeout: float | None = None):
        name = next(k for k, v in JOBS.items() if v is fn)
        limit = timeout or self.timeout
        with self._slots:
            with self._lock:
                helper = self._idle.pop() if self._idle else None
            if helper is None or helper.proc.poll() is not None:
                helper = _Helper()
            try:
                out = helper.call(name, args, limit)
            except PdfJobError:
                self._give_back(helper)
                raise
            except TimeoutError:
                helper.kill()
                raise PdfJobError(f"took longer than {limit:.0f}s to process (the PDF engine was stopped)") from None
            except (EOFError, OSError, ValueError):
                helper.kill()
                raise PdfJobError("crashed the PDF engine (a corrupt or hostile file?)") from None
            self._give_back(helper)
            return out

    def _give_back(self, helper: _Helper) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(helper)
                return
        helper.close()

    def warm_up(self) -> None:
        try:
            self.call(job_ping)
        except Exception:
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            helpers, self._idle = self._idle, []
        for h in helpers:
            h.close()


def write_upload(src, dst: Path, limit: int, chunk: int = 1 << 20) -> int:
    """Copy a file-like ``src`` to ``dst``, stopping at ``limit`` bytes; returns the size or -1 when over."""
    total = 0
    with open(dst, "wb") as out:
        while True:
            block = src.read(chunk)
            if not block:
                break
            total += len(block)
            if total > limit:
                return -1
            out.write(block)
    return total
