"""Answer metrics: exact match and token F1 with Japanese-aware normalisation, citation precision.

Japanese has no spaces, so Japanese text is compared character by character (the SQuAD-style
"mixed segmentation" used for Chinese/Japanese MRC); English by normalised words.

>>> exact_match("The Eiffel Tower.", ["eiffel tower"]), exact_match("小笠原諸島", ["小笠原諸島"])
(1.0, 1.0)
>>> round(token_f1("東アジアの広範囲", ["東アジア"]), 3)
0.667
>>> contains_gold("Capital expenditure was $1,577 million. [1]", ["$1577.00"]), contains_gold("約15メートル", ["15 メートル"])
(1.0, 1.0)
"""
from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

from ..text.lang import is_cjk

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | set("、。・「」『』（）［］【】！？：；，．〜ー―…‘’“”")
_MARKERS = re.compile(r"\[\d+(?:\s*[,，、]\s*\d+)*\]")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", _MARKERS.sub(" ", text)).lower()
    text = "".join(" " if ch in _PUNCT else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    """Words for Latin text, single characters for CJK runs."""
    out: list[str] = []
    for word in normalize(text).split():
        buf = ""
        for ch in word:
            if is_cjk(ch):
                if buf:
                    out.append(buf)
                    buf = ""
                out.append(ch)
            else:
                buf += ch
        if buf:
            out.append(buf)
    return out


_NUMBER = re.compile(r"(?<![\w.])[$¥€£]?\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")


def _numbers_plain(text: str) -> str:
    """Write numbers one way: no currency sign, no thousands separators, no trailing ``.0``/``.00``."""
    def repl(m: re.Match) -> str:
        whole, frac = m.group(1).replace(",", ""), (m.group(2) or "").rstrip("0")
        return whole + ("." + frac if frac else "")
    return _NUMBER.sub(repl, text)


def _squeezed(text: str) -> str:
    return normalize(_numbers_plain(unicodedata.normalize("NFKC", text))).replace(" ", "")


def contains_gold(prediction: str, answers: list[str]) -> float:
    """1.0 when a gold answer occurs in the prediction, after normalisation (case, punctuation,
    articles, spaces, full-width forms, and numbers written one way: ``$1,577.00`` = ``1577``)."""
    p = _squeezed(prediction)
    return 1.0 if p and any((g := _squeezed(a)) and g in p for a in answers) else 0.0


def exact_match(prediction: str, answers: list[str]) -> float:
    p = normalize(prediction).replace(" ", "") if any(is_cjk(c) for c in prediction) else normalize(prediction)
    for a in answers:
        g = normalize(a).replace(" ", "") if any(is_cjk(c) for c in a) else normalize(a)
        if p == g:
            return 1.0
    return 0.0


def token_f1(prediction: str, answers: list[str]) -> float:
    p = tokens(prediction)
    best = 0.0
    for a in answers:
        g = tokens(a)
        common = Counter(p) & Counter(g)
        same = sum(common.values())
        if not p or not g or same == 0:
            continue
        prec, rec = same / len(p), same / len(g)
        best = max(best, 2 * prec * rec / (prec + rec))
    return best


def citation_precision(cited: list[tuple[str, list[int]]], gold_docs: set[str], gold_pages: set[tuple[str, int]]) -> float | None:
    """Share of citations that point at gold evidence: a gold page when the QA set has pages, else a gold
    document. ``None`` when nothing was cited."""
    if not cited:
        return None
    if gold_pages:
        ok = sum(1 for doc, pages in cited if any((doc, p) in gold_pages for p in pages))
    else:
        ok = sum(1 for doc, _ in cited if doc in gold_docs)
    return ok / len(cited)
