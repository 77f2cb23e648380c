"""``default``: the offline generator. SmolLM2-135M writes English answers, each checked against the
sources it cites (answers whose content words are not in the sources are discarded); everything
else — other languages, unsupported or missing answers — goes to the extractive answerer."""
from __future__ import annotations

from .smollm import SmolLM2Generator


class DefaultGenerator(SmolLM2Generator):
    spec = "default"
    #: answers must pass :func:`pdfqa.qa.grounded` or the extractive answerer takes over
    verify_grounding = True
    fallback = "extractive"
    #: the small model reads best with few sources, and on CPU every token costs: keep answers short
    max_contexts = 2
    max_new_tokens = 96
