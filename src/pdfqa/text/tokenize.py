"""Word tokenizers for lexical search, word vectors and answer matching, Japanese-aware.

Japanese is segmented morphologically (fugashi + unidic-lite, MeCab; or sudachi), keeping
content words (nouns, verbs, adjectives, ...) in their dictionary form and dropping particles,
auxiliaries and symbols. Other text is lower-cased, stop-words removed and Snowball-stemmed
(PyStemmer). Mixed text goes through both. Without the Japanese extras installed, CJK runs fall
back to character bigrams — a classic, robust Japanese IR baseline — with a warning.

>>> tok = get_tokenizer("default")
>>> tok("Tokenizers are splitting the texts")
['token', 'split', 'text']
>>> tok("日本で梅雨がないのは北海道とどこか。")                    # doctest: +SKIP
['日本', '梅雨', 'ない', '北海道', 'どこ']
"""
from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache
from dataclasses import dataclass
from typing import Callable

from ..errors import UnknownComponentError
from .lang import is_cjk

log = logging.getLogger(__name__)
Tokenizer = Callable[[str], list[str]]
TOKENIZERS = ("default", "mecab", "sudachi", "bigram", "english", "whitespace")
#: bump when tokenization changes: cached tokens in collections are keyed by name and this version
TOKENIZER_VERSION = 3  # 3: fiscal periods split ("FY2018" -> "fy", "2018")


def cache_key(name: str) -> str:
    return f"{name}@{TOKENIZER_VERSION}"

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
_CJK_RUN = re.compile(r"[\u3005\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]+")
# parts of speech that carry no content for retrieval (UniDic / Sudachi names)
_DROP_POS = {"助詞", "助動詞", "補助記号", "記号", "空白", "接続詞", "感動詞", "フィラー"}


@lru_cache(maxsize=1)
def _english_stopwords() -> frozenset[str]:
    # question words carry no content for matching passages (bm25s's list keeps some of them)
    question_words = {"what", "which", "who", "whom", "whose", "when", "where", "why", "how", "does", "did", "do",
                      "is", "are", "was", "were", "can", "could", "would", "should", "tell", "me", "about"}
    try:
        from ..lexical import import_bm25s

        STOPWORDS_EN = import_bm25s().stopwords.STOPWORDS_EN

        return frozenset(STOPWORDS_EN) | question_words
    except ImportError:  # a small built-in list keeps tokenization usable without bm25s
        return frozenset("a an and are as at be but by for if in into is it no not of on or such that the their "
                         "then there these they this to was will with".split())


@lru_cache(maxsize=1)
def _stemmer():
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:
        log.warning("PyStemmer is not installed: English words are not stemmed (pip install PyStemmer)")
        return None


#: a period glued to its year ("FY2018", "Q3", "H1'22" aside): documents write the year on its own
_PERIOD = re.compile(r"^(fy|cy|q[1-4]|h[12])(\d{2,4})$")


def _split_periods(words: list[str]) -> list[str]:
    out = []
    for w in words:
        m = _PERIOD.match(w)
        out.extend(m.groups() if m else (w,))
    return out


def english_tokens(text: str, *, stem: bool = True, stopwords: bool = True) -> list[str]:
    """Lower-cased words, stop-words removed, stemmed; a fiscal period glued to its year is split.

    >>> english_tokens("FY2018 capital expenditures")
    ['fy', '2018', 'capit', 'expenditur']
    """
    words = _split_periods([w.lower() for w in _WORD.findall(text)])
    if stopwords:
        sw = _english_stopwords()
        words = [w for w in words if w not in sw]
    st = _stemmer() if stem else None
    return st.stemWords(words) if st is not None and words else words


def bigrams(run: str) -> list[str]:
    return [run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]


class MecabTokenizer:
    """fugashi (MeCab) with unidic-lite; thread-safe (one tagger per thread)."""

    name = "mecab"

    def __init__(self):
        import fugashi  # noqa: F401  (fail now if missing)

        self._local = threading.local()

    def _tagger(self):
        t = getattr(self._local, "tagger", None)
        if t is None:
            import fugashi

            t = self._local.tagger = fugashi.Tagger()
        return t

    def words(self, text: str) -> list[str]:
        out = []
        for w in self._tagger()(text):
            f = w.feature
            if getattr(f, "pos1", None) in _DROP_POS:
                continue
            base = getattr(f, "orthBase", None) or w.surface
            out.append(base if is_cjk(base[:1] or "a") else w.surface)
        return out


@dataclass(slots=True)
class Morpheme:
    """A MeCab morpheme with its character offsets in the analysed text."""

    surface: str
    pos: str  # UniDic part of speech, first level (名詞, 助詞, ...)
    base: str  # dictionary form (the surface where MeCab has none)
    start: int
    end: int
    proper: bool  # a proper noun (固有名詞)


def morphemes(text: str) -> list[Morpheme]:
    """Every morpheme of ``text`` (particles and symbols included) with offsets, by fugashi + unidic-lite;
    without them, CJK runs come back as single characters (part of speech ``""``)."""
    try:
        tagger = _mecab()._tagger()
    except ImportError:
        return [Morpheme(ch, "", ch, i, i + 1, False) for i, ch in enumerate(text) if not ch.isspace()]
    out, pos = [], 0
    for w in tagger(text):
        start = text.find(w.surface, pos)
        if start < 0:
            continue
        pos = start + len(w.surface)
        f = w.feature
        out.append(Morpheme(w.surface, getattr(f, "pos1", "") or "", getattr(f, "orthBase", None) or w.surface,
                            start, pos, getattr(f, "pos2", "") == "固有名詞"))
    return out


@lru_cache(maxsize=1)
def _mecab() -> "MecabTokenizer":
    return MecabTokenizer()


class SudachiTokenizer:
    """SudachiPy (mode C, normalized forms) with sudachidict-core."""

    name = "sudachi"

    def __init__(self):
        from sudachipy import Dictionary, SplitMode

        self._dict = Dictionary()
        self._mode = SplitMode.C
        self._local = threading.local()

    def words(self, text: str) -> list[str]:
        tok = getattr(self._local, "tok", None)
        if tok is None:
            tok = self._local.tok = self._dict.create()
        out = []
        for m in tok.tokenize(text, self._mode):
            if m.part_of_speech()[0] in _DROP_POS:
                continue
            out.append(m.normalized_form())
        return out


class MixedTokenizer:
    """Japanese runs through a morphological analyser (or bigrams), the rest through English rules."""

    def __init__(self, japanese: str = "mecab"):
        self.japanese = japanese
        self._ja = None
        if japanese in ("mecab", "sudachi"):
            try:
                self._ja = MecabTokenizer() if japanese == "mecab" else SudachiTokenizer()
            except ImportError:
                log.warning("Japanese tokenizer %r is not installed (pip install 'pdfqa[ja]'); using character "
                            "bigrams for Japanese text", japanese)
                self.japanese = "bigram"
        self.name = "default" if japanese == "mecab" else self.japanese

    def __call__(self, text: str) -> list[str]:
        if not _CJK_RUN.search(text):
            return english_tokens(text)
        if self._ja is not None:
            out = []
            for w in self._ja.words(text):
                if _CJK_RUN.search(w):
                    out.append(w)
                else:
                    out.extend(english_tokens(w))
            return out
        out, pos = [], 0
        for m in _CJK_RUN.finditer(text):
            out.extend(english_tokens(text[pos:m.start()]))
            out.extend(bigrams(m.group()))
            pos = m.end()
        out.extend(english_tokens(text[pos:]))
        return out


@lru_cache(maxsize=8)
def get_tokenizer(name: str = "default") -> Tokenizer:
    """A tokenizer by name: ``default`` (= MeCab for Japanese + English stemming), ``mecab``,
    ``sudachi``, ``bigram``, ``english`` (no Japanese handling) or ``whitespace``."""
    if name in ("default", "mecab"):
        return MixedTokenizer("mecab")
    if name in ("sudachi", "bigram"):
        return MixedTokenizer(name)
    if name == "english":
        return english_tokens
    if name == "whitespace":
        return lambda text: text.lower().split()
    raise UnknownComponentError("tokenizer", name, list(TOKENIZERS))
