"""Read a PDF into pages of visual lines with layout facts, page labels and the outline.

Backends (``READERS``): ``pdfium`` (pypdfium2; the default: ~20× faster than pypdf here, reads files
pypdf rejects, decodes fonts whose ToUnicode maps are broken, and gives font sizes for structure),
``pypdf`` (pure Python; text only, no layout), and readers that find tables themselves, each behind
an extra (:data:`READER_EXTRAS`): ``pdfplumber`` (its text lines and ``find_tables``), ``camelot``
(pdfium's lines and camelot's lattice/stream tables) and ``unstructured`` (``partition_pdf``'s fast
strategy). Tables they find reach the chunker as :attr:`~pdfqa.documents.Page.tables`. See
``benchmarks/README.md`` ("Readers and table extractors") for the measurements.

>>> from pdfqa.pdf import read_pdf
>>> content = read_pdf("examples/elte_nlp_3-tokenization.pdf")      # doctest: +SKIP
>>> content.pages[1].number, content.pages[1].label, content.pages[1].lines[0].text  # doctest: +SKIP
(2, None, 'Baseline: splitting on whitespace')
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib
import re
from pathlib import Path

from ..documents import Line, Page, PdfContent
from ..errors import PdfqaError, PdfReadError, UnknownComponentError
from .ocr import OcrSettings, ocr_pages
from .quality import assess_page_text

READERS = ("pdfium", "pypdf", "pdfplumber", "camelot", "unstructured")
DEFAULT_READER = "pdfium"
#: readers that need an optional install: reader → (the extra, the modules it imports)
READER_EXTRAS = {
    "pdfplumber": ("pdfplumber", ("pdfplumber",)),
    "camelot": ("camelot", ("camelot",)),
    "unstructured": ("unstructured", ("unstructured.partition.pdf",)),
}
#: refuse files beyond these by default (a clear error instead of hours of work or memory blow-up)
MAX_BYTES = 512 * 1024 * 1024
MAX_PAGES = 10_000


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_pdf_file(path: Path, max_bytes: int = MAX_BYTES) -> None:
    """Cheap checks before a parser sees the file: exists, not empty, a PDF header, an end marker."""
    if not path.exists():
        raise PdfReadError(path, "file not found")
    if not path.is_file():
        raise PdfReadError(path, "not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise PdfReadError(path, "empty file (0 bytes)")
    if size > max_bytes:
        raise PdfReadError(path, f"file too large ({size / 2**20:.0f} MiB > limit {max_bytes / 2**20:.0f} MiB)")
    with open(path, "rb") as f:
        head = f.read(1024)
        f.seek(max(0, size - 65536))
        tail = f.read()
    if b"%PDF-" not in head:
        kind = sniff_file_type(head)
        raise PdfReadError(path, f"not a PDF (no %PDF- header; looks like {kind})")
    if b"%%EOF" not in tail:
        raise PdfReadError(path, "truncated PDF (no %%EOF end marker; incomplete download or copy?)")


def sniff_file_type(head: bytes) -> str:
    """What the first bytes of a file look like, for "not a PDF" messages ("a PNG image", ...)."""
    for magic, kind in ((b"PK\x03\x04", "a ZIP/Office file"), (b"\x89PNG", "a PNG image"),
                        (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
                        (b"{\\rtf", "an RTF document"), (b"\xd0\xcf\x11\xe0", "an old Office file"),
                        (b"MZ", "a Windows program"), (b"\x7fELF", "a Linux program")):
        if head.startswith(magic):
            return kind
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "binary data"


#: metadata titles that name the tool or a scratch file, not the document
_JUNK_TITLE = re.compile(
    r"^(?:microsoft (?:word|powerpoint|excel)\s*-.*|untitled.*|no title|title|document\d*|presentation\d*|"
    r"powerpoint presentation|slide \d+|\S+\.(?:docx?|pptx?|xlsx?|pdf|tex|dvi|rtf|odt|indd|ai|qxd))$", re.IGNORECASE)


def metadata_title(title: str | None) -> str | None:
    """The PDF's /Title when it is a real title, else ``None`` (tool names and file names are junk).

    >>> metadata_title("Microsoft Word - doc1.docx"), metadata_title("10-K - 02/07/2019 - 3M Company")
    (None, '10-K - 02/07/2019 - 3M Company')
    """
    if not title:
        return None
    title = " ".join(title.replace("\x00", "").split())
    letters = sum(ch.isalpha() for ch in title)
    if letters < 3 or _JUNK_TITLE.match(title) or assess_page_text(title * 3):
        return None
    return title[:200]


def read_pdf(path: str | Path, *, reader: str = DEFAULT_READER, max_pages: int = MAX_PAGES,
             max_bytes: int = MAX_BYTES, password: str | None = None,
             ocr: "str | OcrSettings | None" = "auto") -> PdfContent:
    """Read ``path`` into a :class:`~pdfqa.documents.PdfContent`.

    Every page is kept (1-based ``number``, printed ``label``); pages whose text is missing or
    garbled carry a ``skip_reason``, unless OCR reads them (``ocr``: ``auto`` — those pages, when the
    OCR packages are installed —, ``always``, ``never``, or :class:`~pdfqa.pdf.ocr.OcrSettings`; OCR'd
    pages have ``ocr=True`` and an ``ocr_confidence``). Raises :class:`~pdfqa.errors.PdfReadError`
    with a one-line cause for files that cannot be read (password, corrupt, truncated, empty, not a
    PDF, too big).
    """
    path = Path(path)
    fn = require_reader(reader)
    check_pdf_file(path, max_bytes)
    doc_hash = file_sha256(path)
    try:
        pages, outline, title = fn(path, max_pages, password)
    except PdfReadError:
        raise
    except Exception as e:  # parsers raise many types; the user needs the file and a cause
        raise PdfReadError(path, f"corrupt or unsupported PDF ({type(e).__name__}: {str(e)[:160]})") from e
    for page in pages:
        if page.skip_reason is None:
            page.skip_reason = assess_page_text(page.text)
    settings = ocr if isinstance(ocr, OcrSettings) else OcrSettings(mode=ocr or "never")
    if settings.mode != "never":
        ocr_pages(path, pages, settings, password=password)
    return PdfContent(path=str(path), doc=path.name, doc_hash=doc_hash, pages=pages, outline=outline, reader=reader,
                      metadata_title=title)


def require_reader(reader: str):
    """The read function of ``reader``; raises one line when the name is unknown (listing the known
    ones) or its extra is not installed (naming it), before any file is touched.

    >>> require_reader("pdfium").__name__
    '_read_pdfium'
    """
    if reader not in READERS:
        raise UnknownComponentError("reader", reader, list(READERS))
    if reader == "pdfium":
        return _read_pdfium
    if reader == "pypdf":
        return _read_pypdf
    extra, modules = READER_EXTRAS[reader]
    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError as e:
        raise PdfqaError(f"the {reader} reader needs its extra: pip install 'pdfqa[{extra}]' "
                         f"({type(e).__name__}: {e})") from e
    module = importlib.import_module(f".{reader}_reader", __package__)
    module.check_ready()
    return module.read


# ---------------------------------------------------------------- pdfium


def _pdfium_open(path: Path, password: str | None):
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(str(path), password=password)
    except pdfium.PdfiumError as e:
        code = getattr(e, "err_code", None)
        causes = {
            1: "unknown PDFium error", 2: "file not found or unreadable",
            3: "corrupt PDF (data format error)", 4: "password-protected (a password is required)",
            5: "unsupported security handler (encryption)", 6: "page not found or damaged",
        }
        raise PdfReadError(path, causes.get(code, f"cannot open ({e})")) from e


def _page_count(path: Path, n: int, max_pages: int) -> None:
    if n == 0:
        raise PdfReadError(path, "PDF has no pages")
    if n > max_pages:
        raise PdfReadError(path, f"too many pages ({n} > limit {max_pages}); split the file or raise max_pages")


def _read_pdfium(path: Path, max_pages: int, password: str | None):
    pdf = _pdfium_open(path, password)
    try:
        n = len(pdf)
        _page_count(path, n, max_pages)
        outline = _pdfium_outline(pdf)
        pages = []
        for i in range(n):
            label = pdf.get_page_label(i) or None
            page = pdf[i]
            try:
                pages.append(_pdfium_page(page, i + 1, label))
            finally:
                page.close()
        return pages, outline, metadata_title(_pdfium_title(pdf))
    finally:
        pdf.close()


def _pdfium_outline(pdf) -> list[tuple[int, str, int]]:
    outline = []
    try:
        for bm in pdf.get_toc(max_depth=6):
            dest = bm.get_dest()
            idx = dest.get_index() if dest is not None else None
            title = (bm.get_title() or "").strip()
            if idx is not None and title:
                outline.append((bm.level + 1, title, idx + 1))
    except Exception:  # a broken outline must not cost the text
        outline = []
    return outline


def pdfium_skeleton(path: Path, max_pages: int, password: str | None):
    """What every reader takes from pdfium whatever reads its text: one empty :class:`Page` per page
    (number, label, visual size), the outline and the metadata title; for readers built on other
    parsers (see :mod:`pdfqa.pdf.pdfplumber_reader`)."""
    pdf = _pdfium_open(path, password)
    try:
        n = len(pdf)
        _page_count(path, n, max_pages)
        pages = []
        for i in range(n):
            page = pdf[i]
            try:
                w, h = page.get_size()
                pages.append(Page(number=i + 1, label=pdf.get_page_label(i) or None, width=w, height=h))
            finally:
                page.close()
        return pages, _pdfium_outline(pdf), metadata_title(_pdfium_title(pdf))
    finally:
        pdf.close()


def _pdfium_title(pdf) -> str | None:
    try:
        return pdf.get_metadata_dict().get("Title")
    except Exception:  # broken Info dictionaries are common and never fatal
        return None


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: font names of bold faces ("TimesNewRomanPS-BoldMT", "HiraKakuPro-W6", "NotoSansJP-Black", ...)
_BOLD_FONT = re.compile(r"bold|black|heavy|semibold|demi|-W[6-9]\b|W[6-9]$", re.IGNORECASE)
#: text set smaller than this (points) is not meant to be read: hidden placeholders, tracking ids
MIN_VISIBLE_PT = 2.5
#: a line that is only a generator's object id (Word content-control UUIDs, "PLACEHOLDER_53")
_ARTIFACT = re.compile(r"^_?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$|^PLACEHOLDER_\d+$")
# Symbol-font bullets (Wingdings/Symbol) decode to private-use code points; show them as bullets.
_PUA_BULLETS = str.maketrans({c: "•" for c in "\uf06c\uf0b7\uf0a7\uf0d8\uf0fc\uf06e\uf075\uf076\uf0a8\uf09f\uf0e0\uf0d9"})


def clean_line(text: str) -> str:
    """Collapse whitespace and map symbol-font bullets to '•'."""
    return " ".join(text.translate(_PUA_BULLETS).split())


def _pdfium_page(page, number: int, label: str | None) -> Page:
    import pypdfium2.raw as raw

    vw, vh = page.get_size()  # PDFium reports the rotated (visual) size
    rot = page.get_rotation() % 360
    w, h = (vh, vw) if rot in (90, 270) else (vw, vh)
    tp = page.get_textpage()
    try:
        text = tp.get_text_range()
        nchars = tp.count_chars()
        rect, mat = raw.FS_RECTF(), raw.FS_MATRIX()

        name_buf, flags = ctypes.create_string_buffer(128), ctypes.c_int()

        def metrics(i: int):
            i = min(i, nchars - 1)
            raw.FPDFText_GetLooseCharBox(tp.raw, i, rect)
            raw.FPDFText_GetMatrix(tp.raw, i, mat)
            scale = abs(mat.a * mat.d - mat.b * mat.c) ** 0.5 or 1.0
            size = raw.FPDFText_GetFontSize(tp.raw, i) * scale
            weight = raw.FPDFText_GetFontWeight(tp.raw, i)
            if weight < 600:  # many generators (wkhtmltopdf, Word) leave the weight at 400-475: ask the name
                raw.FPDFText_GetFontInfo(tp.raw, i, name_buf, 128, ctypes.byref(flags))
                if _BOLD_FONT.search(name_buf.value.decode("latin-1")):
                    weight = 700
            x0, y0, x1, y1 = _visual_box(rect.left, rect.bottom, rect.right, rect.top, rot, w, h)
            return size, weight, x0, y0, x1, y1

        frags: list[Line] = []
        pos = 0
        for m in list(_LINE_BREAK.finditer(text)) + [None]:
            end = m.start() if m else len(text)
            seg = text[pos:end]
            stripped = seg.strip()
            if stripped and nchars > 0:
                a = pos + (len(seg) - len(seg.lstrip()))
                b = pos + len(seg.rstrip()) - 1
                s0, w0, ax0, ay0, ax1, ay1 = metrics(a)
                s1, w1, bx0, by0, bx1, by1 = metrics(b)
                mid = metrics((a + b) // 2)
                if 0 < max(s0, mid[0]) < MIN_VISIBLE_PT or _ARTIFACT.match(stripped):
                    pos = m.end() if m else len(text)
                    continue  # hidden text (placeholders, ids in 0.7-pt type): nobody reads it
                frags.append(Line(
                    text=clean_line(stripped), size=round(max(s0, mid[0]), 1),
                    bold=w0 >= 600 and mid[1] >= 600,
                    x0=min(ax0, bx0), y0=min(ay0, by0, mid[3]), x1=max(ax1, bx1), y1=max(ay1, by1, mid[5]),
                ))
            pos = m.end() if m else len(text)
    finally:
        tp.close()
    return Page(number=number, label=label, width=vw, height=vh, lines=_merge_fragments(frags))


def _visual_box(left, bottom, right, top, rot, w, h):
    """Page-space box → visual box (origin top-left, y down) for the page's /Rotate."""
    if rot == 90:
        return bottom, left, top, right
    if rot == 180:
        return w - right, bottom, w - left, top
    if rot == 270:
        return h - top, w - right, h - bottom, w - left
    return left, h - top, right, h - bottom


def _merge_fragments(frags: list[Line]) -> list[Line]:
    """PDFium breaks a line at sub/superscripts and font changes; rejoin pieces on one visual line."""
    out: list[Line] = []
    for f in frags:
        if out:
            p = out[-1]
            overlap = min(p.y1, f.y1) - max(p.y0, f.y0)
            smaller = max(1e-3, min(p.y1 - p.y0, f.y1 - f.y0))
            if overlap / smaller > 0.5 and f.x0 >= p.x1 - 2:
                longer = p if len(p.text) >= len(f.text) else f
                out[-1] = Line(text=f"{p.text} {f.text}", size=max(p.size, f.size) if longer is p else longer.size,
                               bold=longer.bold, x0=p.x0, y0=min(p.y0, f.y0), x1=f.x1, y1=max(p.y1, f.y1))
                continue
        out.append(f)
    return out


# ---------------------------------------------------------------- pypdf


def _read_pypdf(path: Path, max_pages: int, password: str | None):
    import logging

    import pypdf

    # pypdf logs a warning per font it cannot fully parse; the quality check judges the result instead
    logging.getLogger("pypdf").setLevel(logging.ERROR)

    try:
        pdf = pypdf.PdfReader(str(path))
    except pypdf.errors.PdfReadError as e:
        raise PdfReadError(path, f"corrupt PDF ({e})") from e
    if pdf.is_encrypted:
        if pdf.decrypt(password or "") == pypdf.PasswordType.NOT_DECRYPTED:
            raise PdfReadError(path, "password-protected (a password is required)")
    n = len(pdf.pages)
    _page_count(path, n, max_pages)
    labels = list(pdf.page_labels) if "/PageLabels" in pdf.trailer["/Root"] else [None] * n
    outline = []

    def walk(items, level):
        for it in items:
            if isinstance(it, list):
                walk(it, level + 1)
            else:
                try:
                    outline.append((level, str(it.title).strip(), pdf.get_destination_page_number(it) + 1))
                except Exception:
                    pass

    try:
        walk(pdf.outline, 1)
    except Exception:
        outline = []
    pages = []
    for i, pg in enumerate(pdf.pages):
        box = pg.mediabox
        text = pg.extract_text() or ""
        lines = [Line(text=clean_line(t)) for t in text.splitlines() if t.strip()]
        # synthetic positions keep reading order for the block builder (no layout in pypdf's text)
        for j, line in enumerate(lines):
            line.y0, line.y1 = float(j * 12), float(j * 12 + 10)
        pages.append(Page(number=i + 1, label=labels[i] if i < len(labels) else None,
                          width=float(box.width), height=float(box.height), lines=lines))
    try:
        title = metadata_title(str((pdf.metadata or {}).get("/Title") or "") or None)
    except Exception:  # a broken Info dictionary never costs the text
        title = None
    return pages, outline, title
