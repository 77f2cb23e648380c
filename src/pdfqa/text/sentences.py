"""Sentence splitting for Japanese and English, and joining of wrapped PDF lines.

>>> split_sentences("梅雨は雨季の一種である。東アジアで見られる！本当？ Yes. It is.")
['梅雨は雨季の一種である。', '東アジアで見られる！', '本当？', 'Yes.', 'It is.']
>>> join_lines(["AIシステムを構築", "する。", "A hyphen-", "ated word"])
'AIシステムを構築する。 A hyphenated word'
"""
from __future__ import annotations

import re

from .lang import is_cjk

# Japanese terminators end a sentence wherever they are (closing brackets stay attached);
# English ones only before whitespace and something that can start a sentence, and not after
# an initial or a common abbreviation.
_SPLIT = re.compile(
    r"([。！？｡]+[」』）)\]”’]*|[.!?]+[\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9\u3040-\u30ff\u4e00-\u9fff]))\s*"
)
_ABBREV = {"mr", "ms", "mrs", "dr", "vs", "cf", "al", "no", "fig", "eg", "e.g", "i.e", "ie", "st", "etc", "inc"}


def _is_abbreviation(text: str, end: int) -> bool:
    if text[end - 1] != ".":
        return False
    word = re.search(r"(\S+)\.$", text[:end])
    if not word:
        return False
    w = word.group(1).lower().lstrip("(\"'")
    return w in _ABBREV or (len(w) == 1 and w.isalpha())


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, keeping terminators; never drops characters other than spaces."""
    text = text.strip()
    if not text:
        return []
    out: list[str] = []
    pos = 0
    for m in _SPLIT.finditer(text):
        end = m.end(1)
        if _is_abbreviation(text, end):
            continue
        piece = text[pos:end].strip()
        if piece:
            out.append(piece)
        pos = m.end()
    tail = text[pos:].strip()
    if tail:
        out.append(tail)
    return out


def join_lines(lines: list[str]) -> str:
    """Join wrapped lines: no space between CJK characters, de-hyphenate English line breaks."""
    out = ""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if not out:
            out = line
        elif is_cjk(out[-1]) and is_cjk(line[0]):
            out += line
        elif out.endswith("-") and len(out) > 1 and out[-2].isalpha() and line[0].islower():
            out = out[:-1] + line
        else:
            out += " " + line
    return out
