"""QA sets and passage corpora in JSONL (the format of ``../shared/data/qa/*``).

One question per line: ``id``, ``question``, ``answers`` (list), ``doc_ids`` (relevant documents:
a PDF file name or a passage id; any one counts) and optional ``pages``
(``[{"doc": file name, "page": N}]``, 1-based). Corpora: ``doc_id``, ``title``, ``text``.

>>> import io, json
>>> items = load_qa_lines(['{"id": "q1", "question": "Q?", "answers": ["A"], "doc_ids": ["d1"]}'], "qa.jsonl")
>>> items[0].doc_ids, items[0].pages
(['d1'], [])
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import PdfqaError


class QAFormatError(PdfqaError):
    """A QA or corpus file line is malformed; the message names the file and line number."""


@dataclass
class QAItem:
    id: str
    question: str
    answers: list[str]
    doc_ids: list[str]
    pages: list[tuple[str, int]] = field(default_factory=list)


def _fail(name: str, lineno: int, msg: str) -> QAFormatError:
    return QAFormatError(f"{name}:{lineno}: {msg}")


def load_qa_lines(lines: Iterable[str], name: str = "<qa>") -> list[QAItem]:
    items, seen = [], set()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise _fail(name, lineno, f"not valid JSON ({e.msg})") from e
        if not isinstance(obj, dict):
            raise _fail(name, lineno, "expected a JSON object")
        for key, typ in (("id", (str, int)), ("question", str), ("answers", list), ("doc_ids", list)):
            if key not in obj:
                raise _fail(name, lineno, f"missing field {key!r}")
            if not isinstance(obj[key], typ):
                raise _fail(name, lineno, f"field {key!r} must be {'a list' if typ is list else 'a string'}")
        if not obj["question"].strip():
            raise _fail(name, lineno, "empty question")
        if not obj["doc_ids"] or not all(isinstance(d, str) for d in obj["doc_ids"]):
            raise _fail(name, lineno, "'doc_ids' must be a non-empty list of strings")
        pages = []
        for p in obj.get("pages") or []:
            if not (isinstance(p, dict) and isinstance(p.get("doc"), str) and isinstance(p.get("page"), int)
                    and p["page"] >= 1):
                raise _fail(name, lineno, "'pages' entries must be {\"doc\": str, \"page\": int >= 1}")
            pages.append((p["doc"], p["page"]))
        qid = str(obj["id"])
        if qid in seen:
            raise _fail(name, lineno, f"duplicate id {qid!r}")
        seen.add(qid)
        items.append(QAItem(id=qid, question=obj["question"], answers=[str(a) for a in obj["answers"]],
                            doc_ids=list(obj["doc_ids"]), pages=pages))
    if not items:
        raise QAFormatError(f"{name}: no questions")
    return items


def load_qa(path: str | Path) -> list[QAItem]:
    """Load a QA JSONL file; a malformed line raises :class:`QAFormatError` with its line number."""
    path = Path(path)
    if not path.is_file():
        raise QAFormatError(f"{path}: QA file not found")
    with open(path, encoding="utf-8") as f:
        return load_qa_lines(f, path.name)


def load_corpus(path: str | Path) -> list[dict]:
    """Load a passage corpus JSONL (``doc_id``, ``title``, ``text``)."""
    path = Path(path)
    if not path.is_file():
        raise QAFormatError(f"{path}: corpus file not found")
    out, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise _fail(path.name, lineno, f"not valid JSON ({e.msg})") from e
            if not isinstance(obj, dict) or not isinstance(obj.get("doc_id"), str) or not isinstance(obj.get("text"), str):
                raise _fail(path.name, lineno, "expected {\"doc_id\": str, \"title\": str, \"text\": str}")
            if obj["doc_id"] in seen:
                raise _fail(path.name, lineno, f"duplicate doc_id {obj['doc_id']!r}")
            seen.add(obj["doc_id"])
            out.append(obj)
    return out
