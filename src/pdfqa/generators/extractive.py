"""The extractive answerer: the best-supported sentences of the retrieved blocks, with their citations.

No model is involved: sentences of the retrieved chunks are scored against the question with BM25
over Japanese-aware tokens (morphological for Japanese, stemmed for English); the best one (and a
close second from elsewhere) form the answer, each cited. Works for any language; it never says
anything the documents do not.

>>> gen = ExtractiveGenerator()
>>> text, used, support = gen.answer("What was BPE originally?", [
...     "WordPiece works with word-start symbols.",
...     "BPE was originally a simple compression technique for byte sequences. It merges pairs."])
>>> text, used
('BPE was originally a simple compression technique for byte sequences. [2]', [2])
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable

from ..text import split_sentences
from ..text.tokenize import get_tokenizer
from .base import Generator

#: below this share of the question's (idf-weighted) terms found in the best sentence, abstain
MIN_SUPPORT = 0.3


class ExtractiveGenerator(Generator):
    spec = "extractive"
    extractive = True
    context_window = 100_000

    def __init__(self, *, max_sentences: int = 2, min_support: float = MIN_SUPPORT):
        self.max_sentences = max_sentences
        self.min_support = min_support

    def generate(self, messages: list[dict], *, max_new_tokens: int = 512, **kwargs) -> str:
        raise NotImplementedError("the extractive answerer works on (question, contexts): use answer()")

    def answer(self, question: str, contexts: list[str],
               similarity: Callable[[str, list[str]], list[float]] | None = None) -> tuple[str, list[int], float]:
        """(answer text with [n] markers, 1-based context numbers used, support in [0, 1]).

        ``similarity(question, sentences)``, when given (pdfqa passes the collection's dense
        embedder), adds semantic closeness to the lexical score: paraphrases then count too.
        """
        tok = get_tokenizer("default")
        q = [t for t in dict.fromkeys(tok(question))]
        sents = [(ci, s) for ci, text in enumerate(contexts, 1) for s in split_sentences(text.replace("\n", " "))
                 if len(s.strip()) > 3]
        if not q or not sents:
            return "", [], 0.0
        toks = [tok(s) for _, s in sents]
        n = len(sents)
        df = Counter(t for ts in toks for t in set(ts))
        idf = {t: math.log(1 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5)) for t in q}
        avg = sum(map(len, toks)) / n or 1.0
        q_weight = sum(idf.values()) or 1.0
        lex, supports = [], []
        for ts in toks:
            tf = Counter(ts)
            lex.append(sum(idf[t] * tf[t] * 2.2 / (tf[t] + 1.2 * (0.25 + 0.75 * len(ts) / avg)) for t in q if t in tf))
            supports.append(sum(idf[t] for t in q if t in tf) / q_weight)
        top = max(lex) or 1.0
        sem = list(similarity(question, [s for _, s in sents])) if similarity else [0.0] * n
        lo, hi = min(sem), max(sem)
        scored = []
        for i in range(n):
            semantic = (sem[i] - lo) / (hi - lo) if hi > lo else 0.0
            rank_bonus = 0.02 / sents[i][0]  # better-retrieved contexts win ties
            # the dense model judges question-sentence fit best; term overlap keeps it anchored
            score = (0.3 * lex[i] / top + 0.7 * semantic if similarity else lex[i] / top) + rank_bonus
            scored.append((score, supports[i], i))
        scored.sort(reverse=True)
        # only sentences that contain enough of the question's terms can answer it
        scored = [x for x in scored if x[1] >= self.min_support]
        if not scored:
            return "", [], max(supports)
        best_score, best_support, _ = scored[0]
        chosen = [scored[0]]
        for s in scored[1:]:
            if len(chosen) >= self.max_sentences:
                break
            if s[0] >= 0.85 * best_score and s[1] >= self.min_support and toks[s[2]] != toks[chosen[0][2]]:
                chosen.append(s)
        # the best-supported sentence leads; a second one follows it
        parts, used = [], []
        for _, _, i in chosen:
            ci, sent = sents[i]
            parts.append(f"{sent.strip()} [{ci}]")
            used.append(ci)
        return " ".join(parts), sorted(set(used)), best_support
