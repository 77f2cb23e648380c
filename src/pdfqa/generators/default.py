"""``default``: the offline generator — the extractive answerer, for every language.

Chosen from the table in benchmarks/README.md ("Answers"): on every set it answers better than
SmolLM2-135M drafting English answers (which the old ``default`` checked against the sources and
replaced with the extractive answer nearly every time, after 13-34 s on two cores), and it answers in
well under a second. ``smollm2`` and the prompted generators (``openai:``, ``hf:``, ...) stay available.
"""
from __future__ import annotations

from .extractive import ExtractiveGenerator


class DefaultGenerator(ExtractiveGenerator):
    spec = "default"
