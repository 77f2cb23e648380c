"""The course-material assistant: a web app where a teacher loads lecture PDFs into courses and
students ask questions, see answers stream in and open the cited page, highlighted.

>>> from pdfqa.app import serve
>>> serve("courses/", port=8000)            # doctest: +SKIP

``create_app(root, ...)`` gives the FastAPI app itself (to mount, test or run under another server);
``pip install 'pdfqa[app]'`` installs what it needs (FastAPI, uvicorn, python-multipart).
"""
from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve", "is_loopback"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'pdfqa.app' has no attribute {name!r}")
