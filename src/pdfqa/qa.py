"""``PDFQA``: answers with citations over a collection — ask, stream, chat.

>>> from pdfqa import Collection, PDFQA
>>> qa = PDFQA(Collection.open("my-collection"), generator="default")       # doctest: +SKIP
>>> ans = qa.ask("What was BPE originally used for?")                        # doctest: +SKIP
>>> ans.answer, [(c.doc, c.page) for c in ans.citations]                     # doctest: +SKIP
('BPE was originally a simple compression technique for byte sequences ... [1]', [('elte_nlp_3-tokenization.pdf', 24)])

An :class:`Answer` carries ``question``, ``answer``, ``abstained``, ``citations`` (doc, page, pages,
page_label, quote, chunk_id, marker), ``contexts`` (the chunks given to the generator, with scores),
``generator`` (the spec that produced the text), ``retriever``, ``timings`` (seconds) and
``dropped_markers`` (citation markers that pointed at no source and were removed).
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

import numpy as np

from .documents import Hit
from .generators import DEFAULT_GENERATOR, Generator, get_generator
from .prompts import NOT_FOUND, REWRITE, answer_messages, says_not_found, short_answer
from .text import detect_language, split_sentences
from .text.tokenize import get_tokenizer

#: minimum cosine similarity (default embedder) between the question and the best retrieved chunk
#: below which pdfqa abstains without asking the generator; see benchmarks/README.md ("Answers": the grid's
#: 0.82 refuses an answerable question on an OCR'd scan, cosine 0.815, and no calibration set has OCR)
MIN_EVIDENCE = {"e5-small": 0.80}
#: questions longer than this (characters) are cut here before retrieval and answering, with a note
MAX_QUESTION_CHARS = 1000
_MARKER = re.compile(r"\[(\d+(?:\s*[,，、]\s*\d+)*)\]")


@dataclass
class Citation:
    doc: str
    page: int
    pages: list[int]
    page_label: str | None
    quote: str
    chunk_id: str
    marker: int  # the [n] in the answer text
    inferred: bool = False  # True when the model gave no marker and pdfqa attributed the sentence
    ocr: bool = False  # the cited text was read by OCR from the page image
    ocr_confidence: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Answer:
    question: str
    answer: str
    abstained: bool
    citations: list[Citation]
    contexts: list[Hit]
    generator: str
    retriever: str
    language: str
    timings: dict[str, float] = field(default_factory=dict)
    dropped_markers: int = 0
    standalone_question: str | None = None
    evidence: float | None = None
    #: the fact alone (no markers, no supporting sentence); ``None`` when abstained
    short: str | None = None
    #: the extractive answerer's support for its unit (share of the question's words found), else ``None``
    support: float | None = None
    #: what pdfqa changed about the question (e.g. a very long one was truncated), for the user to read
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The ``pdfqa ask --json`` shape."""
        return {"question": self.question, "answer": self.answer, "abstained": self.abstained,
                "citations": [c.to_json() for c in self.citations],
                "contexts": [{**h.to_json(), "n": i} for i, h in enumerate(self.contexts, 1)],
                "generator": self.generator, "retriever": self.retriever, "language": self.language,
                "timings": {k: round(v, 3) for k, v in self.timings.items()},
                "dropped_markers": self.dropped_markers, "standalone_question": self.standalone_question,
                "evidence": None if self.evidence is None else round(self.evidence, 4),
                "short_answer": self.short, "support": None if self.support is None else round(self.support, 4),
                "notes": self.notes}


def content_tokens(text: str) -> set[str]:
    return set(get_tokenizer("default")(text))


def best_quote(chunk_text: str, answer: str) -> str:
    """The chunk's sentence that shares most content words with the answer (for highlighting)."""
    sents = split_sentences(chunk_text.replace("\n", " ")) or [chunk_text]
    ans = content_tokens(_MARKER.sub(" ", answer))
    return max(sents, key=lambda s: (len(content_tokens(s) & ans), -abs(len(s) - 120))).strip()


def final_answer(stream: Iterator[str | Answer]) -> Answer:
    """Drain a ``stream()`` and return the :class:`Answer` it ends with."""
    ans = None
    for item in stream:
        if isinstance(item, Answer):
            ans = item
    if ans is None:
        raise RuntimeError("the answer stream ended without an Answer")
    return ans


class PDFQA:
    """Question answering over a :class:`~pdfqa.collection.Collection`.

    ``generator`` and ``retriever`` are spec strings (see :mod:`pdfqa.generators`,
    :mod:`pdfqa.retrieval`); ``k`` contexts are retrieved; ``max_new_tokens`` bounds the answer.
    """

    def __init__(self, collection, *, generator: str | Generator = DEFAULT_GENERATOR, retriever: str | None = None,
                 k: int = 5, max_new_tokens: int = 384, min_evidence: float | None = None):
        self.collection = collection
        self.generator = get_generator(generator) if isinstance(generator, str) else generator
        self.retriever_spec = retriever or collection.default_retriever
        self.k = k
        self.max_new_tokens = max_new_tokens
        self.min_evidence = min_evidence if min_evidence is not None else MIN_EVIDENCE.get(collection.embedder_spec, 0.0)

    # ------------------------------------------------------------------ pieces

    def retrieve(self, question: str, k: int | None = None) -> list[Hit]:
        hits = self.collection.search(question, k=k or self.k, retriever=self.retriever_spec)
        out, seen = [], set()
        for h in hits:  # the same text twice wastes the context window
            key = " ".join(h.chunk.text.split())
            if h.chunk.chunk_id in seen or key in seen:
                continue
            seen.update({h.chunk.chunk_id, key})
            out.append(h)
        return out

    def evidence(self, question: str, hits: list[Hit]) -> float:
        """Cosine similarity of the question to the best retrieved chunk in the default dense index."""
        if not hits:
            return 0.0
        q, vecs = self.collection.vectors_for(question, hits)
        return float(np.max(vecs @ q))

    def sentence_similarity(self, question: str, sentences: list[str]) -> list[float]:
        """Cosine similarity of the question to each sentence with the collection's default embedder."""
        from .embeddings.cache import cached_passages  # the same sentences come back question after question

        emb = self.collection.embedder(self.collection.embedder_spec)
        q = self.collection.query_vector(question)
        return (cached_passages(emb, sentences) @ q).tolist() if sentences else []

    def pack(self, question: str, hits: list[Hit], gen: Generator, lang: str) -> list[Hit]:
        """The hits that fit the generator's context window, best first."""
        limit = getattr(gen, "max_contexts", None) or len(hits)
        budget = gen.context_window - self.max_new_tokens - gen.count_tokens(answer_messages(question, [], [], lang)[0]["content"]) - 64
        out, used = [], 0
        for h in hits[:limit]:
            cost = gen.count_tokens(h.chunk.text) + 24
            if out and used + cost > budget:
                break
            out.append(h)
            used += cost
        return out

    @staticmethod
    def label(h: Hit) -> str:
        c = h.chunk
        pages = f"pages {c.pages[0]}-{c.pages[-1]}" if len(c.pages) > 1 else f"page {c.page}"
        return f"{c.doc}, {pages}" + (f", printed page {c.page_label}" if c.page_label else "")

    def citations(self, text: str, contexts: list[Hit]) -> tuple[str, list[Citation], int]:
        """Map [n] markers to contexts; drop (and count) markers that point nowhere."""
        dropped = 0
        used: list[int] = []

        def repl(m: re.Match) -> str:
            nonlocal dropped
            nums = [int(x) for x in re.split(r"\s*[,，、]\s*", m.group(1))]
            good = [n for n in nums if 1 <= n <= len(contexts)]
            dropped += len(nums) - len(good)
            used.extend(good)
            return "".join(f"[{n}]" for n in good)

        text = _MARKER.sub(repl, text).strip()
        text = re.sub(r"[ \t]+([.。,、])", r"\1", text)
        cites = []
        for n in dict.fromkeys(used):
            cites.append(self._citation(contexts[n - 1], n, text))
        if not cites and text and contexts:  # no markers: attribute by overlap, flagged as inferred
            ans = content_tokens(text)
            scored = [(len(content_tokens(h.chunk.text) & ans) / max(1, len(ans)), i) for i, h in enumerate(contexts)]
            share, i = max(scored)
            if share >= 0.5:
                cites.append(self._citation(contexts[i], i + 1, text, inferred=True))
        return text, cites, dropped

    def _citation(self, h: Hit, n: int, answer: str, inferred: bool = False) -> Citation:
        c = h.chunk
        return Citation(doc=c.doc, page=c.page, pages=list(c.pages), page_label=c.page_label,
                        quote=best_quote(c.text, answer), chunk_id=c.chunk_id, marker=n, inferred=inferred,
                        ocr=c.ocr, ocr_confidence=c.ocr_confidence)

    # ------------------------------------------------------------------ ask / stream

    def ask(self, question: str, *, k: int | None = None) -> Answer:
        """Answer ``question``; see :class:`Answer` for what comes back."""
        return final_answer(self.stream(question, k=k))

    def stream(self, question: str, *, k: int | None = None, standalone: str | None = None) -> Iterator[str | Answer]:
        """Yield answer text pieces as they are generated, then the final :class:`Answer`."""
        t0 = time.perf_counter()
        lang = detect_language(question)
        notes = []
        if len(question) > MAX_QUESTION_CHARS:
            question = question[:MAX_QUESTION_CHARS]
            notes.append(f"the question was truncated to its first {MAX_QUESTION_CHARS} characters")
        query = (standalone or question)[: 2 * MAX_QUESTION_CHARS]
        hits = self.retrieve(query, k) if query.strip() else []
        t_ret = time.perf_counter() - t0
        evidence = self.evidence(query, hits)
        gen = self.generator
        timings = {"retrieve": t_ret}

        def finish(text: str, ctx: list[Hit], spec: str, abstained: bool = False, dropped: int = 0,
                   cites: list[Citation] | None = None, short: str | None = None,
                   support: float | None = None) -> Answer:
            timings["total"] = time.perf_counter() - t0
            return Answer(question=question, answer=text, abstained=abstained, citations=cites or [], contexts=ctx,
                          generator=spec, retriever=self.retriever_spec, language=lang, timings=timings,
                          dropped_markers=dropped, standalone_question=standalone, evidence=evidence,
                          short=None if abstained else short, support=support, notes=notes)

        if not hits or evidence < self.min_evidence:
            text = NOT_FOUND.get(lang, NOT_FOUND["en"])
            yield text
            yield finish(text, hits, gen.spec, abstained=True)
            return
        if not gen.extractive:
            t = time.perf_counter()
            ctx = self.pack(query, hits, gen, lang)
            msgs = answer_messages(question if not standalone else standalone, [h.chunk.text for h in ctx],
                                   [self.label(h) for h in ctx], lang)
            pieces = []
            max_new = min(self.max_new_tokens, getattr(gen, "max_new_tokens", self.max_new_tokens))
            for piece in gen.stream(msgs, max_new_tokens=max_new):
                pieces.append(piece)
                yield piece
            timings["generate"] = time.perf_counter() - t
            raw = "".join(pieces).strip()
            if not raw or says_not_found(raw):
                text = NOT_FOUND.get(lang, NOT_FOUND["en"])
                yield finish(text, ctx, gen.spec, abstained=True)
                return
            text, cites, dropped = self.citations(raw, ctx)
            yield finish(text, ctx, gen.spec, dropped=dropped, cites=cites, short=short_answer(text))
            return
        # the extractive answerer (``extractive`` and ``default``)
        t = time.perf_counter()
        ext, spec = gen, gen.spec
        # sentences are matched against the user's own words; a follow-up's rewrite only widens retrieval
        ctx_texts = [h.chunk.text for h in hits]
        heads = [" ".join(h.chunk.heading_path) for h in hits]
        ex = ext.extract(question, ctx_texts, similarity=self.sentence_similarity, headings=heads)
        if ex is None and query != question:
            ex = ext.extract(query, ctx_texts, similarity=self.sentence_similarity, headings=heads)
        timings["generate"] = time.perf_counter() - t
        if ex is None:
            text = NOT_FOUND.get(lang, NOT_FOUND["en"])
            yield text
            yield finish(text, hits, spec, abstained=True)
            return
        text, cites, dropped = self.citations(ex.text, hits)
        for c in cites:  # the quote is the supporting unit, so the page view highlights what was quoted
            if c.marker == ex.used[0]:
                c.quote = ex.unit
        yield text
        yield finish(text, hits, spec, dropped=dropped, cites=cites, short=ex.short, support=ex.support)

    # ------------------------------------------------------------------ conversations

    def chat(self) -> "Conversation":
        """A conversation that keeps history and rewrites follow-up questions before retrieval."""
        return Conversation(self)


_FOLLOW_UP = re.compile(
    r"\b(it|its|they|them|their|this|that|these|those|he|she|his|her|there|what about|how about|and)\b|"
    r"それ|その|これ|この|あれ|あの|そこ|同じ|では|じゃあ|彼|彼女", re.IGNORECASE)


class Conversation:
    """``ask`` / ``stream`` with history; follow-ups become standalone questions before retrieval
    (by the generator when it is a capable LLM, else by carrying the previous question's terms)."""

    def __init__(self, qa: PDFQA, history: list[tuple[str, str]] | None = None):
        self.qa = qa
        self.history: list[tuple[str, str]] = list(history or [])  # (standalone question, answer)

    def standalone(self, question: str) -> str:
        if not self.history or not _FOLLOW_UP.search(question):
            return question
        gen = self.qa.generator
        lang = detect_language(question)
        if not gen.extractive:
            hist = "\n".join(f"Q: {q}\nA: {a}" for q, a in self.history[-3:])
            msgs = [{"role": "user", "content": REWRITE.get(lang, REWRITE["en"]).format(history=hist, q=question)}]
            try:
                out = gen.generate(msgs, max_new_tokens=96).strip().strip('"「」')
                if out:
                    return out.splitlines()[0]
            except Exception:  # rewriting is an aid: fall back to the heuristic
                pass
        prev = self.history[-1][0]
        return f"{question} ({prev})"

    def stream(self, question: str, *, k: int | None = None) -> Iterator[str | Answer]:
        standalone = self.standalone(question)
        final = None
        for item in self.qa.stream(question, k=k, standalone=standalone if standalone != question else None):
            if isinstance(item, Answer):
                final = item
            yield item
        if final is not None:
            self.history.append((standalone, final.answer))

    def ask(self, question: str, *, k: int | None = None) -> Answer:
        return final_answer(self.stream(question, k=k))
