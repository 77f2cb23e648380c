"""Cheap language detection: enough to pick Japanese vs. other text for tokenizers and prompts.

>>> detect_language("梅雨とは何季の一種か?"), detect_language("What is a token?")
('ja', 'en')
"""
from __future__ import annotations


def is_cjk(ch: str) -> bool:
    """True for Han ideographs, kana, CJK punctuation and full-width forms."""
    o = ord(ch)
    return (
        0x3000 <= o <= 0x30FF  # CJK punctuation, hiragana, katakana
        or 0x3400 <= o <= 0x4DBF
        or 0x4E00 <= o <= 0x9FFF
        or 0xF900 <= o <= 0xFAFF
        or 0xFF00 <= o <= 0xFFEF  # full-width forms, half-width katakana
        or 0x31F0 <= o <= 0x31FF
    )


def _is_kana(ch: str) -> bool:
    return 0x3040 <= ord(ch) <= 0x30FF or 0x31F0 <= ord(ch) <= 0x31FF or 0xFF66 <= ord(ch) <= 0xFF9F


def detect_language(text: str) -> str:
    """``"ja"`` when CJK characters make up a fifth of the letters (or any kana appears), else ``"en"``."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "en"
    cjk = sum(1 for c in letters if is_cjk(c))
    if any(_is_kana(c) for c in letters) and cjk >= 2:
        return "ja"
    return "ja" if cjk / len(letters) >= 0.2 else "en"
