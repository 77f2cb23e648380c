"""Answer units of a chunk: sentences of prose, list items, and table rows with their header.

A chunk's text holds its blocks one per line (paragraphs joined, list items and table rows one per
line, slide lines as the slide shows them). The extractive answerer quotes the shortest unit that
holds an answer, so a list item stays a list item and a table row keeps the header that says what
its numbers are.

>>> us = answer_units("Revenue by year\\nItem 2021 2022\\nSales 1,200 1,577\\n• BPE merges pairs. It is old.")
>>> [(u.kind, u.text) for u in us]
[('sentence', 'Revenue by year'), ('row', 'Sales 1,200 1,577'), ('item', 'BPE merges pairs. It is old.')]
>>> us[1].header
'Item 2021 2022'
>>> us[1].display()
'Item 2021 2022 / Sales 1,200 1,577'
>>> [u.display() for u in answer_units("Fatalities\\nYear | Rate\\n2021 | 1.36\\n2022 | 1.33")]
['Fatalities', 'Year | Rate / 2021 | 1.36', 'Year | Rate / 2022 | 1.33']
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .sentences import join_lines, split_sentences

_BULLET = re.compile(r"^(?:[•·∙◦▪▫●○■□◆◇▶▷►➢➤✓✔※★☆＊*\-–—・]\s*|\(?\d{1,2}[.)）]\s+|[（(]\d{1,2}[)）]\s*|[①-⑳]\s*)")
_NUMERIC = re.compile(r"^[(（$€¥£▲△-]*[\d,.]+%?[)）]?$|^[-—–]$")
_NUMBERED = re.compile(r"^(?:[\d０-９]+(?:[.．][\d０-９]+)*\.?\s*\S|第[\d０-９一二三四五六七八九十]+[章節])")
_END = re.compile(r"[。．.!?！？」』)）]$")
_CURRENCY = {"$", "€", "¥", "£", "￥", "円"}
_YEAR = re.compile(r"(?:FY)?(?:19|20)\d\d")
#: a unit longer than this is cut at sentence ends (slides sometimes run many lines together)
MAX_UNIT_CHARS = 400


@dataclass(slots=True)
class Unit:
    """One answer unit: ``kind`` is ``sentence``, ``item`` (a list item) or ``row`` (a table row, with
    ``header``: the table's header line, or ``""`` when none was found); ``line`` is its line number
    in the chunk."""

    text: str
    kind: str
    line: int
    header: str = ""

    def display(self) -> str:
        """The unit as quoted in an answer: a row comes with its header (``header / row``)."""
        return f"{self.header} / {self.text}" if self.kind == "row" and self.header else self.text


def is_row(line: str) -> bool:
    """A table row: at least two numeric cells (not all of them years: that is a header) making up a
    good share of the line's cells."""
    if line.count(" | ") >= 1:  # a table block's row: cells joined by " | " (pdfqa.chunking)
        return True
    cells = [c for c in line.split() if c not in _CURRENCY]  # "$ 1,577": the sign is not a cell
    if len(cells) < 3:
        return False
    nums = [t for t in cells if _NUMERIC.match(t) and not _YEAR.fullmatch(t)]
    return len(nums) >= 2 and len(nums) / len(cells) >= 0.34


def _is_header(line: str) -> bool:
    """A header line above rows: mostly words or years, not a sentence."""
    cells = line.split()
    return (1 <= len(cells) <= 16 and len(line) <= 160 and not line.rstrip().endswith(("。", "."))
            and sum(1 for c in cells if _NUMERIC.match(c) and not _YEAR.fullmatch(c)) <= len(cells) // 3)


def answer_units(text: str) -> list[Unit]:
    """The units of ``text`` in reading order (see the module docstring)."""
    out: list[Unit] = []
    # "title [SEP] text": passage corpora (JSQuAD) put the title before the text on one line
    lines = [ln.strip() for ln in text.replace(" [SEP] ", "\n").split("\n")]
    header = ""
    for i, line in enumerate(lines):
        if not line:
            continue
        if is_row(line):
            if (not header and " | " in line and not any(ch.isdigit() for ch in line)
                    and i + 1 < len(lines) and is_row(lines[i + 1])):
                header = line  # a table block's header row: it heads the rows below, it is not an answer
                continue
            if not header and i > 0 and lines[i - 1] and _is_header(lines[i - 1]) and not is_row(lines[i - 1]):
                header = lines[i - 1]
                if out and out[-1].line == i - 1:
                    out.pop()  # the header line is part of the row units, not an answer of its own
            out.append(Unit(line, "row", i, header))
            continue
        header = ""
        if _BULLET.match(line):
            item = _BULLET.sub("", line, count=1).strip()
            if len(item) <= MAX_UNIT_CHARS:
                if item:
                    out.append(Unit(item, "item", i))
                continue
            line = item
        # a line that does not end its sentence goes on in the next one (slides break sentences into
        # lines): read them together, as the slide is read
        if (out and out[-1].kind == "sentence" and out[-1].line == i - 1 and not _END.search(out[-1].text)
                and len(out[-1].text) + len(line) <= MAX_UNIT_CHARS
                and not (i + 1 < len(lines) and is_row(lines[i + 1]))  # a table's header stays apart
                and not _NUMBERED.match(out[-1].text)):  # and so does a numbered heading ("2.5 Trends")
            prev = out.pop()
            line = join_lines([prev.text, line])
        for s in split_sentences(line):
            if len(s) > MAX_UNIT_CHARS:  # a run-on line: cut at commas/、 so a unit stays quotable
                out.extend(Unit(p, "sentence", i) for p in _cut(s))
            else:
                out.append(Unit(s, "sentence", i))
    return out


def _cut(text: str) -> list[str]:
    parts, cur = [], ""
    for piece in re.split(r"(?<=[、;；])\s*|(?<=,)\s+", text):  # never inside "1,577"
        if cur and len(cur) + len(piece) > MAX_UNIT_CHARS:
            parts.append(cur)
            cur = ""
        cur += piece if not cur or cur.endswith(("、", "，")) else " " + piece
    if cur:
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]
