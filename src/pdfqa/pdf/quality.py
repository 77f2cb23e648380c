"""Per-page text-quality check: is this page's text layer usable, missing, or garbage?

A broken ToUnicode map turns Japanese slides into letters from half a dozen unrelated scripts
(``۝भେֶେֶӃܳज़ֶ``); real text uses one or two script families. Image-only pages have no text.

>>> assess_page_text("")
'no text layer (image-only page)'
>>> assess_page_text("梅雨は東アジアの広範囲で見られる雨季の一種である。") is None
True
>>> assess_page_text("データ・アーキテクト ユーザー サーバー Data Architect (AR) データ人材モデル") is None
True
>>> assess_page_text("۝भେֶେֶӃܳज़ֶ޻෎ തظޙ࢜՝ఔ দӜ஌໵ α΢ϯυɾσβΠϯ෱ԬঁֶӃେֶ").startswith("garbled")
True
"""
from __future__ import annotations

import unicodedata
from collections import Counter

#: script families that legitimately appear together (Japanese mixes three scripts)
_FAMILY = {
    "CJK": "cjk", "HIRAGANA": "cjk", "KATAKANA": "cjk", "HALFWIDTH": "cjk", "FULLWIDTH": "latin",
    # ー (KATAKANA-HIRAGANA PROLONGED SOUND MARK) is in most katakana words (データ, サーバー): counted as a
    # script of its own it made a contents page of データ... lines look like three unrelated scripts
    "KATAKANA-HIRAGANA": "cjk",
    "IDEOGRAPHIC": "cjk", "HANGUL": "hangul", "LATIN": "latin", "CYRILLIC": "cyrillic",
    "GREEK": "greek", "ARABIC": "arabic", "HEBREW": "hebrew", "THAI": "thai",
}
MIN_LETTERS = 12  # below this a page is judged on nothing but emptiness


def _family(ch: str) -> str:
    try:
        first = unicodedata.name(ch).split(" ", 1)[0]
    except ValueError:
        return "unknown"
    return _FAMILY.get(first, first.lower())


def script_profile(text: str) -> Counter[str]:
    """Letters per script family (private-use and unassigned characters count as ``unknown``)."""
    prof: Counter[str] = Counter()
    for ch in text:
        cat = unicodedata.category(ch)
        if cat.startswith("L") or cat in ("Co", "Cn"):
            prof[_family(ch) if cat.startswith("L") else "unknown"] += 1
    return prof


def assess_page_text(text: str) -> str | None:
    """``None`` when the text is usable, else the reason it is not (one short phrase)."""
    stripped = "".join(text.split())
    if not stripped:
        return "no text layer (image-only page)"
    if stripped.count("\ufffd") > max(3, len(stripped) // 20):
        return "garbled text layer (undecodable characters)"
    prof = script_profile(text)
    letters = sum(prof.values())
    if letters < MIN_LETTERS:
        return None
    top_two = sum(n for _, n in prof.most_common(2))
    minor = [fam for fam, n in prof.items() if n / letters >= 0.03]
    if prof.get("unknown", 0) / letters > 0.1 or top_two / letters < 0.85 or len(minor) >= 4:
        fams = ", ".join(f for f, _ in prof.most_common(4))
        return f"garbled text layer (letters from unrelated scripts: {fams}; broken font encoding?)"
    return None
