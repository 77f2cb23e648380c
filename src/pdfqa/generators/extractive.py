"""The extractive answerer: the fact first — the shortest unit of the retrieved blocks that holds the
answer — then the supporting sentence with its citation.

No language model is involved. The retrieved chunks are cut into answer units (sentences, list items,
table rows with their header: :mod:`pdfqa.text.units`); each unit is scored against the question by
BM25 over Japanese-aware tokens plus, when pdfqa passes one, the dense model's similarity, plus whether
it holds something of the type asked for (a date for "when", a number for "how many", ...). In the best
unit :mod:`pdfqa.generators.spans` looks for the span that answers; when it finds one the answer is
that span, then the unit quoted with its ``[n]``; otherwise the unit itself (a list item, a table row
with its header, a sentence). Mojibake and table debris are never returned. Works for any language; it
never says anything the documents do not.

>>> gen = ExtractiveGenerator()
>>> ex = gen.extract("When was BPE introduced?", [
...     "WordPiece works with word-start symbols.",
...     "BPE was introduced by Gage in 1994 for data compression. It merges pairs."])
>>> ex.short, ex.text, ex.used
('1994', '1994\\nBPE was introduced by Gage in 1994 for data compression. [2]', [2])

An :class:`Extract` carries ``short`` (the fact), ``text`` (what is shown, with ``[n]`` markers),
``used`` (1-based context numbers), ``kind`` (``span``, ``sentence``, ``item`` or ``row``), ``unit``
(the supporting unit as it stands in the source, for highlighting), ``support`` (the idf-weighted share of the question's words found in the unit,
its block's heading or its neighbours, in [0, 1]) and ``similarity`` (the dense model's cosine of the
unit, ``None`` without one).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from ..pdf.quality import assess_page_text
from ..text.lang import is_cjk
from ..text.tokenize import get_tokenizer
from ..text.units import Unit, answer_units
from .base import Generator
from .spans import Question, Span, analyse, best_span, tokens

#: below this share of the question's (idf-weighted, rarest) words found around the best unit, abstain;
#: chosen with qa.MIN_EVIDENCE by benchmarks/calibrate_abstention.py on jsquad, jaquad, squad, en_slides and
#: ja_gov, reported leave-one-set-out (benchmarks/README.md; financebench_dev, which this answerer cannot
#: answer, is reported, not chosen on)
MIN_SUPPORT = 0.275
#: support counts the question's rarest this-many words (by idf over the retrieved units)
SUPPORT_TERMS = 8
#: a unit without anything of the asked type (no date for "when") counts this share of its support
UNTYPED_SUPPORT = 0.75
#: a second unit (from another passage) is shown when it scores at least this share of the best one
SECOND_UNIT = 0.85
#: units given to the dense model per question (the best by term overlap): bounds the answer step's cost;
#: the same units are searched for an answer span
MAX_EMBEDDED = 16
#: how a unit's score is made (see UnitScores.combined): the share of dense closeness against term
#: overlap, the weight of its best answer span's score, of the retrieval rank of its passage (1/rank) and
#: of holding the asked type. Chosen by benchmarks/answer_units.py across jsquad, jaquad, squad, en_slides
#: and ja_gov with MAX_EMBEDDED (the unit holding the gold answer first: 0.819 -> 0.862 mean over the five;
#: benchmarks/README.md)
UNIT_WEIGHTS = {"semantic": 0.5, "span": 1.0, "rank": 0.2, "typed": 0.0}
#: a span score counts up to this much (typed spans near the question's rare words score ~1-1.5)
MAX_SPAN_SCORE = 1.5


@dataclass
class Extract:
    short: str
    text: str
    used: list[int]
    kind: str
    unit: str
    support: float
    similarity: float | None


def _usable(u: Unit) -> bool:
    """Not mojibake, not debris: enough letters (a table row may be numbers), one or two scripts."""
    letters = sum(1 for c in u.text if c.isalpha())
    if u.kind != "row" and (letters < 2 or letters < 0.3 * len(u.text.replace(" ", ""))):
        return False
    if all(c.isascii() or is_cjk(c) for c in u.text):  # one or two scripts by construction: skip the costly check
        return True
    return assess_page_text(u.text) is None


class ExtractiveGenerator(Generator):
    spec = "extractive"
    extractive = True
    context_window = 100_000

    def __init__(self, *, min_support: float = MIN_SUPPORT, max_embedded: int = MAX_EMBEDDED):
        self.min_support = min_support
        self.max_embedded = max_embedded

    def generate(self, messages: list[dict], *, max_new_tokens: int = 512, **kwargs) -> str:
        raise NotImplementedError("the extractive answerer works on (question, contexts): use extract()")

    def score_units(self, question: str, contexts: list[str],
                    similarity: Callable[[str, list[str]], list[float]] | None = None, *,
                    headings: list[str] | None = None) -> "UnitScores | None":
        """Every answer unit of ``contexts`` scored against ``question`` (``None`` when the question
        has no content words or the contexts no usable unit): what :meth:`extract` chooses from."""
        tok = get_tokenizer("default")
        q = analyse(question)
        qterms = q.terms
        units = [(ci, u) for ci, text in enumerate(contexts, 1) for u in answer_units(text) if _usable(u)]
        if not qterms or not units:
            return None
        toks = [tok(u.text) for _, u in units]
        n = len(units)
        df = Counter(t for ts in toks for t in set(ts))
        idf = {t: math.log(1 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5)) for t in qterms}
        # support is the share of the question's rarest SUPPORT_TERMS words: a long question (an analyst's
        # instructions around the ask) is not unsupported because the page lacks its boilerplate
        q_weight = sum(sorted(idf.values(), reverse=True)[:SUPPORT_TERMS]) or 1.0
        avg = sum(map(len, toks)) / n or 1.0
        head_toks = [set(tok(h)) if h else set() for h in (headings or [""] * len(contexts))]
        lex, supports = [], []
        for i, ts in enumerate(toks):
            tf = Counter(ts)
            lex.append(sum(idf[t] * tf[t] * 2.2 / (tf[t] + 1.2 * (0.25 + 0.75 * len(ts) / avg)) for t in qterms if t in tf))
            ci, u = units[i]
            # a unit is read with its block's heading and its neighbours (a slide title, the sentence
            # before a list item): the question's words may sit there
            around = set(ts) | head_toks[ci - 1]
            for k in (i - 1, i + 1):
                if 0 <= k < n and units[k][0] == ci:
                    around |= set(toks[k])
            supports.append((sum(idf[t] for t in qterms if t in set(ts)) + 0.5 * sum(
                idf[t] for t in qterms if t in around and t not in set(ts))) / q_weight)
            supports[-1] = min(1.0, supports[-1])
        sims: list[float | None] = [None] * n
        order = sorted(range(n), key=lambda i: -lex[i])[: self.max_embedded]
        if similarity is not None:
            got = list(similarity(question, [units[i][1].display() for i in order]))
            for i, s in zip(order, got):
                sims[i] = float(s)
        # the best-overlapping units are searched for a span: where the question's rare words stand right
        # next to something of the asked type, that unit is the one that answers (measured: spans searched
        # in every unit choose the same units)
        spans: list[Span | None] = [None] * n
        for i in order:
            if units[i][1].kind != "row":
                spans[i] = best_span(q, units[i][1].text, idf)
        typed = [q.atype in ("thing", "reason") or _has_type(q, u.text) for _, u in units]
        for i in range(n):
            if not typed[i]:  # "who"/"when"/"how many" and no name/date/number here: weaker evidence of an answer
                supports[i] *= UNTYPED_SUPPORT
        return UnitScores(q, units, toks, idf, lex, supports, sims, typed, spans, frozenset(order))

    def extract(self, question: str, contexts: list[str], similarity: Callable[[str, list[str]], list[float]] | None = None,
                *, headings: list[str] | None = None) -> Extract | None:
        """The answer to ``question`` from ``contexts`` (``None`` when no unit holds enough of the
        question's words: see :attr:`min_support`). ``similarity(question, texts)``, when given (pdfqa
        passes the collection's dense embedder), adds semantic closeness to the lexical score;
        ``headings`` (one per context) count as the context of each of its units."""
        us = self.score_units(question, contexts, similarity, headings=headings)
        if us is None:
            return None
        q, units, toks, supports, sims = us.question, us.units, us.tokens, us.supports, us.similarities
        scores = us.combined()
        scored = sorted(((sc, i) for i, sc in enumerate(scores)), reverse=True)
        best_i = scored[0][1]
        if supports[best_i] < self.min_support:  # the best unit must hold enough of the question's words
            return None
        ci, u = units[best_i]
        span = us.spans[best_i] if best_i in us.searched or u.kind == "row" else best_span(q, u.text, us.idf)
        shown = u.display()
        # a close second from another passage follows the supporting unit: retrieval ranks passages, not
        # answers, and a second source is often the one that says it outright
        second = next((i for sc, i in scored[1:] if sc >= SECOND_UNIT * scored[0][0] and units[i][0] != ci
                       and supports[i] >= self.min_support and toks[i] != toks[best_i]), None)
        more = f"\n{units[second][1].display()} [{units[second][0]}]" if second is not None else ""
        used = [ci] + ([units[second][0]] if second is not None else [])
        if span is not None and _keep_span(q, span, u.text):
            return Extract(span.text, f"{span.text}\n{shown} [{ci}]{more}", used, "span", u.text, supports[best_i],
                           sims[best_i])
        return Extract(shown, f"{shown} [{ci}]{more}", used, u.kind, u.text, supports[best_i], sims[best_i])


@dataclass
class UnitScores:
    """What :meth:`ExtractiveGenerator.score_units` measured, one entry per unit: ``units`` as
    ``(context number, Unit)``, their ``tokens``, BM25 ``lexical`` scores against the question,
    ``supports`` (see :class:`Extract`), dense ``similarities`` (``None`` for units not embedded),
    ``typed`` (holds something of the asked type) and ``spans`` (the best answer span of each unit in
    ``searched``, ``None`` elsewhere); ``idf`` weighs the question's terms."""

    question: Question
    units: list[tuple[int, Unit]]
    tokens: list[list[str]]
    idf: dict[str, float]
    lexical: list[float]
    supports: list[float]
    similarities: list[float | None]
    typed: list[bool]
    spans: list[Span | None]
    searched: frozenset[int]

    def combined(self, weights: dict[str, float] | None = None) -> list[float]:
        """Each unit's score (``weights``: :data:`UNIT_WEIGHTS`): term overlap and (min-max scaled) dense
        closeness, its best span's score, the retrieval rank of its passage, holding the asked type."""
        w = weights or UNIT_WEIGHTS
        top = max(self.lexical) or 1.0
        known = [s for s in self.similarities if s is not None]
        lo, hi = (min(known), max(known)) if known else (0.0, 0.0)
        sem_w = w["semantic"] if known else 0.0
        out = []
        for i, (ci, _) in enumerate(self.units):
            sim = self.similarities[i]
            semantic = (sim - lo) / (hi - lo) if sim is not None and hi > lo else 0.0
            span = self.spans[i]
            out.append((1 - sem_w) * self.lexical[i] / top + sem_w * semantic
                       + w["span"] * (max(0.0, min(MAX_SPAN_SCORE, span.score)) if span is not None else 0.0)
                       + w["rank"] / ci + w["typed"] * self.typed[i])
        return out


def _has_type(q: Question, text: str) -> bool:
    span = best_span(Question(q.text, q.lang, q.atype, []), text)
    return span is not None and span.typed


#: a span must score at least this (typed spans) to be given as the fact; else the unit is the answer
MIN_SPAN_SCORE = {"thing": 0.45, "typed": 0.5}


def _keep_span(q: Question, span, unit: str) -> bool:
    if q.atype == "reason" or not span.text or len(span.text) >= 0.8 * len(unit):
        return False  # why/how questions are answered by the sentence
    if q.atype != "thing":
        return span.typed and span.score >= MIN_SPAN_SCORE["typed"]
    return span.score >= MIN_SPAN_SCORE["thing"] and len(tokens(span.text)) <= 8
