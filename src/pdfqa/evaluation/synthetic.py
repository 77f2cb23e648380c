"""Synthetic QA sets from a collection, for people who have PDFs but no questions.

For each sampled chunk a generator writes one question and its short answer (an LLM through any
generator spec; offline, ``extractive`` makes cloze questions: a key term of a sentence is blanked).
Kept only when (1) the answer is found in the chunk, (2) retrieval with the question finds the chunk in
its top-``k`` (round-trip check, i.e. answerable from the collection) and (3) it is not a near duplicate
of a kept question. Output rows use the QA format: ``id``, ``question``, ``answers``, ``doc_ids``,
``pages``, plus ``chunk_id`` (the gold chunk) and ``generator``.
"""
from __future__ import annotations

import json
import random
import re
from typing import Iterator

from ..collection import Collection
from ..errors import PdfqaError
from ..generators import get_generator
from ..text import detect_language, split_sentences
from ..text.tokenize import get_tokenizer
from .answers import normalize

PROMPT = {
    "en": ("Write one question that the passage below answers, and its short answer copied from the passage. "
           "Reply with JSON only: {{\"question\": \"...\", \"answer\": \"...\"}}\n\nPassage:\n{text}"),
    "ja": ("次の文章だけで答えられる質問を1つと、その短い答え（文章からそのまま抜き出す）を書いてください。"
           "JSONだけで答えてください: {{\"question\": \"...\", \"answer\": \"...\"}}\n\n文章：\n{text}"),
}


def _parse(reply: str) -> tuple[str, str] | None:
    m = re.search(r"\{.*\}", reply, re.S)
    if not m:
        return None
    try:
        obj = json.loads(m.group())
    except json.JSONDecodeError:
        return None
    q, a = str(obj.get("question", "")).strip(), str(obj.get("answer", "")).strip()
    return (q, a) if q and a else None


def cloze(text: str, rng: random.Random) -> tuple[str, str] | None:
    """A fill-in-the-blank question from one sentence: the rarest-looking content word is blanked."""
    tok = get_tokenizer("default")
    sents = [s for s in split_sentences(text.replace("\n", " ")) if 30 <= len(s) <= 240]
    rng.shuffle(sents)
    for s in sents:
        lang = detect_language(s)
        if lang == "ja":  # morphological words (a regex would take whole clauses)
            words = [w for w in tok(s) if len(w) >= 2 and w in s]
        else:
            words = [w for w in re.findall(r"\w+", s) if len(w) >= 3 and tok(w)]
        if not words:
            continue
        term = max(words, key=lambda w: (any(c.isdigit() for c in w), len(w)))
        q = s.replace(term, "____", 1)
        prefix = "空欄に入る語は？ " if lang == "ja" else "Fill in the blank: "
        return prefix + q, term
    return None


def generate_questions(col: Collection, generator: str, n: int, *, k: int = 5, seed: int = 0,
                       retriever: str | None = None, max_tries: int | None = None) -> Iterator[dict]:
    """Yield up to ``n`` answerable, deduplicated synthetic questions (see the module docstring)."""
    gen = get_generator(generator)
    rng = random.Random(seed)
    chunks = [c for _, c, _ in col.store.iter_chunks() if len(c.text) >= 80]
    if not chunks:
        raise PdfqaError(f"{col.path}: no chunks long enough to ask about")
    rng.shuffle(chunks)
    tok = get_tokenizer("default")
    kept: list[set[str]] = []
    made = 0
    for tries, c in enumerate(chunks):
        if made >= n or (max_tries and tries >= max_tries):
            break
        lang = detect_language(c.text)
        if gen.extractive:
            qa = cloze(c.text, rng)
        else:
            reply = gen.generate([{"role": "user", "content": PROMPT.get(lang, PROMPT["en"]).format(text=c.text)}],
                                 max_new_tokens=160)
            qa = _parse(reply)
        if not qa:
            continue
        question, answer = qa
        if normalize(answer).replace(" ", "") not in normalize(c.text).replace(" ", ""):
            continue  # the answer must come from the passage
        words = set(tok(question))
        if any(len(words & w) / max(1, len(words | w)) > 0.8 for w in kept):
            continue  # near duplicate
        hits = col.search(question, k=k, retriever=retriever)
        if c.chunk_id not in {h.chunk.chunk_id for h in hits}:
            continue  # not answerable by retrieval over this collection
        kept.append(words)
        made += 1
        yield {"id": f"syn-{made:04d}", "question": question, "answers": [answer], "doc_ids": [c.doc],
               "pages": [{"doc": c.doc, "page": p} for p in c.pages], "chunk_id": c.chunk_id,
               "generator": gen.spec}
