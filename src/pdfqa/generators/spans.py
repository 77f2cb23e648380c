"""Answer spans without a model: what the question asks for (a date, a number, a name, a place, a thing)
and where its words sit in a supporting unit pick the span of that unit that answers it.

The question's content words are found in the unit; candidates are the unit's noun chunks (Japanese,
by MeCab part of speech) or runs of content words, split where capitalisation changes (English) —
never made only of the question's own words. A candidate scores by how close it sits to the matched
question words (weighted by their rarity), by whether it is of the type asked for (``いつ``/"when": a
date; ``何人``/"how many": a number; ``誰``/"who": a name; ``どこ``/"where": a place) and, in Japanese,
by the question's word order: the words just before the question word (``北海道と|どこ``) should stand just
before the answer.

>>> q = analyse("日本で梅雨がないのは北海道とどこか。")
>>> q.atype, q.left[:1]
('place', ['北海道'])
>>> best_span(q, "梅雨がないのは北海道と小笠原諸島である。").text
'小笠原諸島'
>>> best_span(analyse("When was BPE introduced?"), "BPE was introduced by Gage in 1994 for data compression.").text
'1994'
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..text.lang import is_cjk
from ..text.tokenize import english_tokens, get_tokenizer, morphemes

#: answer types: what kind of span a question asks for ("reason": why/how, answered by a clause, no span)
TYPES = ("date", "number", "person", "place", "thing", "reason")
_REASON = re.compile(r"\bwhy\b|^\s*how\b(?!\s+(many|much|long|old|far|large|big|tall|high|often|fast|deep|wide))|"
                     r"なぜ|何故|どうして|理由|どのよう|どうやって|どういう|どんな(方法|仕組み|目的)", re.I)

_EN_TYPES = [
    (re.compile(r"\b(when|what (year|date|day|month|century|decade|time|period|era)|which (year|date|century|month))\b", re.I), "date"),
    (re.compile(r"\b(how (many|much|long|old|far|large|big|tall|high|often|fast|deep|wide)|what (percentage|percent|number|amount|proportion|share|size|fraction|ratio|rate|age|population)|what was the (total|amount))\b", re.I), "number"),
    (re.compile(r"\b(who|whom|whose)\b", re.I), "person"),
    (re.compile(r"\b(where|what (country|city|state|place|region|town|continent|county|province|island|nation|location))\b", re.I), "place"),
]
_EN_WH = re.compile(r"\b(what|which|who|whom|whose|when|where|why|how)\b", re.I)
_JA_TYPES = [
    (re.compile(r"いつ|何年|何月|何日|何世紀|何時代|何曜|西暦何|何年代|何時|(した|された|なった|始まった|できた)(年|時期|年代)は"), "date"),
    (re.compile(r"第何|何[人個回倍%％歳円本台社件種枚点冊頭匹羽つ割分秒度位号階ヶケか箇]|いくつ|いくら|どのくらい|どれくらい|どれほど|何パーセント|何メートル|何キロ|何万|何億|何千|何百|何十|何番"), "number"),
    (re.compile(r"誰|だれ|どなた|何者|何という人|どの人物"), "person"),
    (re.compile(r"どこ|どの(国|都市|地域|県|州|町|村|場所|島|大陸)|何県|何市|何国|何州"), "place"),
]
_JA_WH = re.compile(r"何|なに|なん|どこ|どの|どれ|どう|どんな|いつ|誰|だれ|いくつ|いくら|どなた|どちら")
_CLOZE = "____"
#: question words and pronouns: they say what is asked, not what to look for
_JA_NOT_TERMS = {"何", "なに", "なん", "どこ", "どれ", "どの", "誰", "だれ", "いつ", "いくつ", "いくら", "どう", "どんな",
                 "どちら", "どなた", "それ", "これ", "あれ", "ここ", "そこ", "あそこ", "其れ", "此れ", "彼れ", "ある", "いる",
                 "する", "為る", "有る", "居る", "言う", "云う", "ござる"}
#: the instruction ``pdfqa qa-generate`` puts before a cloze question (not words to look for)
_CLOZE_PREFIX = re.compile(r"^\s*(空欄に入る語は？|Fill in the blank:)\s*")
_MONTHS = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}
_NUMBER_WORDS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                 "twenty", "thirty", "forty", "fifty", "hundred", "thousand", "million", "billion", "trillion", "half",
                 "dozen", "first", "second", "third"}
_CONNECT = {"of", "the", "and", "de", "for", "&", "von", "van", "la", "du"}
_COPULA = {"is", "was", "are", "were"}
_JA_CHUNK_POS = {"名詞", "接頭辞", "接尾辞"}
_JA_PLACE_SUFFIX = ("県", "市", "国", "島", "州", "町", "村", "区", "郡", "諸島", "地方", "大陸", "半島", "湾", "川", "山")
_JA_PERSON_SUFFIX = ("氏", "さん", "様", "公", "天皇", "将軍")
_EN_WORD = re.compile(r"[$€£¥]?\d[\d,.]*%?|[^\W\d_][\w'’.-]*[\w]|[^\W\d_]|\S")


@dataclass(slots=True)
class Tok:
    surface: str
    start: int
    end: int
    norm: str | None  # the content word as the tokenizer writes it (None for function words/punctuation)
    pos: str = ""
    proper: bool = False


@dataclass
class Question:
    """What :func:`analyse` learns from a question: language, answer type, content words, and the
    content words just before (``left``, nearest first) and after (``right``) the question word."""

    text: str
    lang: str
    atype: str
    terms: list[str]
    left: list[str] = field(default_factory=list)
    right: list[str] = field(default_factory=list)
    #: the noun the question word governs (``何音`` → ``音``, ``何人`` → ``人``): it ends the answer
    #: (``放出音``, ``25人``), so it is not trimmed as one of the question's own words
    head: str = ""
    #: an English "what/who is|was ..." question: the answer is what follows "<its words> is|was" in a
    #: sentence ("What was BPE originally?" - "BPE was originally a compression technique")
    copula: bool = False


@dataclass(slots=True)
class Span:
    text: str
    score: float
    typed: bool  # of the type the question asks for


def _norm_en(word: str) -> str | None:
    toks = english_tokens(word)
    return toks[0] if toks else None


def tokens(text: str) -> list[Tok]:
    """Tokens of ``text`` with character offsets: MeCab morphemes for Japanese, words for the rest."""
    if any(is_cjk(c) for c in text):
        out = []
        for m in morphemes(text):
            if m.pos in ("助詞", "助動詞", "補助記号", "記号", "空白", "接続詞", "感動詞"):
                norm = None
            elif any(is_cjk(c) for c in m.base):
                norm = m.base
            else:
                norm = _norm_en(m.surface)
            out.append(Tok(m.surface, m.start, m.end, norm, m.pos, m.proper))
        return out
    return [Tok(m.group(), m.start(), m.end(), _norm_en(m.group())) for m in _EN_WORD.finditer(text)]


def analyse(question: str) -> Question:
    """The answer type and anchors of ``question`` (see :class:`Question`)."""
    if _CLOZE in question:
        question = _CLOZE_PREFIX.sub("", question)
    ja = any(is_cjk(c) for c in question)
    lang = "ja" if ja else "en"
    atype = "thing"
    for rx, t in (_JA_TYPES if ja else _EN_TYPES):
        if rx.search(question):
            atype = t
            break
    if atype == "thing" and _REASON.search(question):
        atype = "reason"
    terms = [t for t in dict.fromkeys(get_tokenizer("default")(question.replace(_CLOZE, " "))) if t not in _JA_NOT_TERMS]
    toks = tokens(question)
    wh = None
    if _CLOZE in question:
        pos = question.index(_CLOZE)
        wh = next((i for i, t in enumerate(toks) if t.start >= pos), len(toks))
        toks = [t for t in toks if t.surface.strip("_")]
        wh = min(wh, len(toks))
    else:
        rx = _JA_WH if ja else _EN_WH
        wh = next((i for i, t in enumerate(toks) if rx.fullmatch(t.surface.lower()) or (ja and rx.match(t.surface))), None)
    left = right = []
    head = ""
    if wh is not None:
        left = [t.norm for t in reversed(toks[:wh]) if t.norm]
        right = [t.norm for t in toks[wh + 1:] if t.norm]
        if ja and wh < len(toks):
            word = toks[wh].surface
            rest = word[1:] if word.startswith("何") and len(word) > 1 else ""
            nxt = toks[wh + 1] if wh + 1 < len(toks) else None
            head = rest or (nxt.surface if nxt is not None and word in ("何", "なに", "なん") and nxt.pos in _JA_CHUNK_POS else "")
    copula = (not ja and wh is not None and wh + 1 < len(toks) and toks[wh + 1].surface.lower() in _COPULA
              and _CLOZE not in question)
    return Question(question, lang, atype, terms, left, right, head, copula)


def _candidates(toks: list[Tok], text: str, ja: bool) -> list[tuple[int, int]]:
    """Token ranges [i, j) that could be an answer: noun chunks (Japanese) or content-word runs split at
    capitalisation changes (other text)."""
    out, i, n = [], 0, len(toks)
    if ja:
        while i < n:
            if toks[i].pos in _JA_CHUNK_POS or (toks[i].norm and not any(is_cjk(c) for c in toks[i].surface)):
                j = i
                while j < n and (toks[j].pos in _JA_CHUNK_POS or toks[j].surface in "・ー－-,，." and j + 1 < n
                                 and toks[j + 1].pos in _JA_CHUNK_POS
                                 and (toks[j].surface not in ",，." or _is_number(toks[j + 1].surface))
                                 or (toks[j].norm and not any(is_cjk(c) for c in toks[j].surface))):
                    j += 1
                out.append((i, j))
                i = j
            else:
                i += 1
        return out
    while i < n:
        if toks[i].norm is None and not _is_number(toks[i].surface):
            i += 1
            continue
        cap = toks[i].surface[:1].isupper()
        j = i + 1
        while j < n:
            s = toks[j].surface
            if toks[j].norm is not None or _is_number(s):
                if (s[:1].isupper()) != cap and not _is_number(s) and not (cap and s.lower() in _MONTHS):
                    break
                j += 1
            elif cap and s.lower() in _CONNECT and j + 1 < n and toks[j + 1].surface[:1].isupper():
                j += 1
            elif s == "," and j + 1 < n and _is_number(toks[j + 1].surface) and (
                    _is_number(toks[j - 1].surface) or toks[j - 1].surface.lower() in _MONTHS):
                j += 1
            else:
                break
        out.append((i, j))
        i = j
    return out


def _is_number(s: str) -> bool:
    return bool(re.fullmatch(r"[$€£¥]?[\d０-９][\d０-９,.]*%?", s)) or s.lower() in _NUMBER_WORDS


def _typed(atype: str, toks: list[Tok], ja: bool) -> bool:
    words = [t.surface for t in toks]
    text = "".join(words) if ja else " ".join(words)
    has_num = any(_is_number(w) or t.pos == "名詞" and re.fullmatch(r"[\d０-９一二三四五六七八九十百千万億]+", w)
                  for w, t in zip(words, toks))
    if atype == "number":
        return has_num
    if atype == "date":
        if ja:
            return has_num and bool(re.search(r"[年月日世紀代]|時代|明治|大正|昭和|平成|令和", text)) or bool(
                re.search(r"(明治|大正|昭和|平成|令和|江戸|室町|鎌倉|奈良|平安)", text))
        return any(re.fullmatch(r"1\d{3}|20\d{2}|\d{2,4}s", w) for w in words) or any(w.lower() in _MONTHS for w in words)
    if atype in ("person", "place"):
        if ja:
            suffix = _JA_PERSON_SUFFIX if atype == "person" else _JA_PLACE_SUFFIX
            return any(t.proper for t in toks) or text.endswith(suffix)
        # a capitalised word, but not only acronyms (BPE, NASA): names are written in capitals and lower case
        return (words[0][:1].isupper() and not has_num
                and not (atype == "person" and all(w.isupper() for w in words if w[:1].isalpha())))
    return True


def best_span(q: Question, unit: str, weights: dict[str, float] | None = None, *, max_tokens: int = 12) -> Span | None:
    """The best answer span in ``unit`` for ``q`` (``None`` when the unit has no candidate outside the
    question's own words). ``weights`` give each question term's weight (its rarity); 1.0 by default."""
    toks = tokens(unit)
    if not toks:
        return None
    ja = q.lang == "ja" and any(is_cjk(c) for c in unit)
    qset = set(q.terms)
    w = {t: (weights or {}).get(t, 1.0) for t in qset}
    total = sum(w.values()) or 1.0
    where: dict[str, list[int]] = {}
    for i, t in enumerate(toks):
        if t.norm in qset:
            where.setdefault(t.norm, []).append(i)
    # "<question word> is|was": a copula right after the question's own words (what follows it is the answer)
    copulas = [k for k, t in enumerate(toks) if t.surface.lower() in _COPULA
               and any(toks[m].norm in qset for m in range(max(0, k - 3), k))] if q.copula else []
    best: Span | None = None
    for i, j in _candidates(toks, unit, ja):
        while i < j and (toks[i].norm in qset or toks[i].norm is None and not _is_number(toks[i].surface)):
            if ja and i + 1 < j and _is_number(toks[i + 1].surface) and toks[i].pos == "接頭辞":
                break  # 第|36条, 約|120回: the prefix belongs to the number
            i += 1  # trim the question's own words and stray function words from the ends
        while j > i and (toks[j - 1].norm in qset or toks[j - 1].norm is None and not _is_number(toks[j - 1].surface)):
            if ja and j - 1 > i and (q.head and q.head.endswith(toks[j - 1].surface) or _is_number(toks[j - 2].surface)):
                break  # the governed noun or a counter ends the answer: 放出|音, 25|人, 2006|年
            j -= 1
        if i >= j or j - i > max_tokens:
            continue
        inside = sum(1 for t in toks[i:j] if t.norm in qset and not (q.head and q.head.endswith(t.surface)))
        if inside >= (j - i + 1) // 2 + (1 if j - i > 1 else 0):
            continue
        near = 0.0
        for term, idx in where.items():
            d = min(min(abs(k - i), abs(k - (j - 1))) for k in idx if not i <= k < j) if any(
                not i <= k < j for k in idx) else None
            if d is not None:
                near += w[term] / (1.0 + d / 3.0)
        score = near / total
        typed = _typed(q.atype, toks[i:j], ja)
        if q.atype not in ("thing", "reason"):
            score += 0.5 if typed else -0.5
        if q.left and _adjacent(toks, i, q.left[0], before=True):
            score += 0.4
        if q.right and _adjacent(toks, j - 1, q.right[0], before=False):
            score += 0.2
        if copulas and any(0 < i - k <= 3 for k in copulas):
            score += 0.4
        if ja and q.head and j - i > 1 and q.head.endswith(toks[j - 1].surface):
            score += 0.4  # 何音 → …音: the answer ends with the noun the question word governs
        score -= 0.03 * max(0, (j - i) - 3) + 0.1 * inside
        if best is None or score > best.score:
            best = Span(unit[toks[i].start:toks[j - 1].end].strip(), score, typed)
    return best


def _adjacent(toks: list[Tok], pos: int, term: str, *, before: bool, reach: int = 3) -> bool:
    rng = range(max(0, pos - reach), pos) if before else range(pos + 1, min(len(toks), pos + 1 + reach))
    return any(toks[k].norm == term for k in rng)
