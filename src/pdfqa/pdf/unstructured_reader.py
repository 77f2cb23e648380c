"""The ``unstructured`` reader: ``unstructured.partition.pdf.partition_pdf(strategy="fast")``, its
elements as lines. Needs ``pip install 'pdfqa[unstructured]'`` and spaCy's English model.

The fast strategy reads the text layer with pdfminer and classifies each text box (title, narrative
text, list item, header, footer) with spaCy's ``en_core_web_sm``, which unstructured downloads from
GitHub on first use; it is not on PyPI, so offline installs add it themselves (``python -m spacy
download en_core_web_sm`` where GitHub is reachable). Without it ``partition_pdf`` returns no
elements at all, so this reader refuses to start instead. The ``hi_res`` strategy (the one that finds
tables) needs layout models from the Hugging Face hub and is not offered.

Each element becomes one :class:`~pdfqa.documents.Line` (its box from the element's coordinates):
``Title`` elements are marked bold, so that the chunker reads them as headings; headers, footers
and page numbers are left out, as unstructured classified them. Page numbers, labels, outline and
title come from pdfium, as for the default reader. unstructured's usage analytics are switched off
(``SCARF_NO_ANALYTICS``) before it is imported: pdfqa makes no network calls of its own.

>>> from pdfqa.pdf import read_pdf
>>> read_pdf("examples/cio_dp2020_03_zero_trust.pdf", reader="unstructured").pages[0].lines[0].text  # doctest: +SKIP
'デジタル・ガバメント推進標準ガイドライン 実践ガイドブック ...'
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from ..documents import Line
from ..errors import PdfqaError
from ..text import join_lines
from .reader import _ARTIFACT, clean_line, pdfium_skeleton

SPACY_MODEL = "en_core_web_sm"
#: the size given to every line (unstructured reports no font sizes): the chunker sees one body size
BODY_PT = 10.0
_DROPPED = {"Header", "Footer", "PageNumber"}


def _quiet() -> None:
    # unstructured phones home on import unless told not to, and prints a banner on first use
    os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
    logging.getLogger("unstructured").setLevel(logging.ERROR)


_quiet()


def check_ready() -> None:
    """Refuse (one line) when spaCy's English model is missing: without it unstructured tries to
    download it and, failing, silently returns no text."""
    if importlib.util.find_spec(SPACY_MODEL) is None:
        raise PdfqaError(f"the unstructured reader needs spaCy's {SPACY_MODEL} model, which is not on PyPI: "
                         f"python -m spacy download {SPACY_MODEL} (needs github.com)")


def read(path: Path, max_pages: int, password: str | None):
    """(pages, outline, title) of ``path`` (see :func:`pdfqa.pdf.read_pdf`)."""
    _quiet()
    from unstructured.partition.pdf import partition_pdf

    pages, outline, title = pdfium_skeleton(path, max_pages, password)
    # languages only label the elements in the fast strategy; naming them skips detection per document
    elements = partition_pdf(filename=str(path), strategy="fast", languages=["eng", "jpn"], password=password)
    for el in elements:
        n = el.metadata.page_number
        coords = el.metadata.coordinates
        text = clean_line(join_lines((el.text or "").split("\n")))  # wrapped Japanese joins without spaces
        if not n or n > len(pages) or not text or el.category in _DROPPED or _ARTIFACT.match(text):
            continue
        page = pages[n - 1]
        box = (0.0, 0.0, 0.0, 0.0)
        if coords is not None and coords.points:
            xs = [x for x, _ in coords.points]
            ys = [y for _, y in coords.points]
            # the fast strategy's coordinates are points from the top-left of the page
            sx = page.width / coords.system.width if coords.system and coords.system.width else 1.0
            sy = page.height / coords.system.height if coords.system and coords.system.height else 1.0
            box = (min(xs) * sx, min(ys) * sy, max(xs) * sx, max(ys) * sy)
        page.lines.append(Line(text=text, size=BODY_PT, bold=el.category == "Title", x0=box[0], y0=box[1],
                               x1=box[2], y1=box[3]))
    return pages, outline, title
