"""Run the course assistant on a real socket for tests: uvicorn in a background thread on a free
127.0.0.1 port (the same server `pdfqa serve` runs), plus small helpers for its API."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app, *, startup_timeout: float = 120.0) -> Iterator[str]:
    """Serve ``app`` over HTTP until the block ends; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_for(client, course: str, doc: str, statuses=("ready", "failed"), timeout: float = 600.0,
              seen: list | None = None) -> dict:
    """Poll the documents list until ``doc`` has one of ``statuses``; returns its entry."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = client.get(f"/api/courses/{course}/documents")
        assert r.status_code == 200, r.text
        last = next((d for d in r.json() if d["doc"] == doc), None)
        if seen is not None and last is not None:
            seen.append(dict(last))
        if last is not None and last["status"] in statuses:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{doc} did not reach {statuses} within {timeout}s; last: {last}")
