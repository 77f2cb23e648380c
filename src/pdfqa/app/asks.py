"""Questions to the web app: a bounded queue in front of worker threads, so a crowd of students gets
answers at the rate the machine can give them, refusals with ``Retry-After`` beyond that, and
everything else (health, page images, document lists, uploads) never waits behind them.

- At most ``max_pending`` questions are admitted (being answered or waiting); one more is refused
  (:class:`Busy`: the server answers 503 with ``Retry-After``, the seconds the admitted ones need at
  the recent answer rate) instead of letting waits grow without limit.
- ``workers`` threads produce answers. A question holds one of ``cpu_slots`` until its first piece of
  text is out (retrieval, and the whole answer for the extractive answerer: CPU work); then it lets go,
  so a generator that streams from a server (which mostly waits) does not keep a core from the next
  question. With few CPU slots the event loop, which serves every other request, rarely waits for the
  interpreter lock.
- Pieces reach the event loop through an ``asyncio.Queue``: no request thread waits for an answer.

>>> q = AskQueue(workers=8, cpu_slots=2, max_pending=32)     # doctest: +SKIP
>>> handle = q.submit(lambda h: iter(["text", answer]), loop)  # doctest: +SKIP
>>> await handle.get(timeout=120)                             # doctest: +SKIP
("item", "text")
"""
from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator


class Busy(Exception):
    """The queue is full: ``retry_after`` seconds is when to try again."""

    def __init__(self, pending: int, retry_after: int):
        super().__init__(f"the server is answering {pending} questions already; try again in {retry_after} s")
        self.pending, self.retry_after = pending, retry_after


class AskHandle:
    """One admitted question: ``get()`` its items (``("item", x)``, ``("error", exc)``, ``("end",)``);
    ``cancel()`` stops it (a queued question is dropped, a running one stops at its next piece)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._items: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self.future = None

    def put(self, item: tuple) -> None:
        """From the worker thread."""
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the loop has closed (the server is stopping): nobody waits for it
            self.cancelled.set()

    async def get(self, timeout: float) -> tuple:
        """The next item; ``asyncio.TimeoutError`` after ``timeout`` seconds."""
        return await asyncio.wait_for(self._items.get(), timeout=max(timeout, 0.0))

    def cancel(self) -> None:
        self.cancelled.set()
        if self.future is not None:
            self.future.cancel()


class AskQueue:
    """See the module docstring. ``stats()`` reports the queue for ``/api/health``."""

    def __init__(self, *, workers: int, cpu_slots: int, max_pending: int):
        if workers < 1 or cpu_slots < 1 or max_pending < 1:
            raise ValueError("ask workers, CPU slots and the queue limit must each be at least 1")
        self.workers, self.cpu_slots, self.max_pending = workers, cpu_slots, max_pending
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="pdfqa-ask")
        self._cpu = threading.BoundedSemaphore(cpu_slots)
        self._lock = threading.Lock()
        self.pending = 0
        self.refused = 0
        self._cpu_wanted = 0  # questions holding or waiting for a CPU slot
        self._finished: deque[float] = deque(maxlen=512)  # when recent questions finished (monotonic)

    def rate(self, window: float = 30.0) -> float:
        """Questions answered per second over the last ``window`` seconds (0 when too few to tell)."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._finished if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return len(recent) / max(now - recent[0], 1e-3)

    def retry_after(self) -> int:
        """Seconds until the questions admitted now are answered, at the recent rate (1 to 60)."""
        rate = self.rate()
        if rate <= 0:
            return 5
        return int(min(60, max(1, math.ceil(self.pending / rate))))

    def submit(self, produce: Callable[[AskHandle], Iterator], loop: asyncio.AbstractEventLoop) -> AskHandle:
        """Admit a question whose items ``produce(handle)`` yields (in a worker thread; it may watch
        ``handle.cancelled``), or raise :class:`Busy`."""
        with self._lock:
            if self.pending >= self.max_pending:
                self.refused += 1
                full = True
            else:
                self.pending += 1
                full = False
        if full:
            raise Busy(self.pending, self.retry_after())
        handle = AskHandle(loop)

        def run() -> None:
            with self._lock:
                self._cpu_wanted += 1
            held = self._cpu.acquire()
            try:
                if handle.cancelled.is_set():
                    return
                for item in produce(handle):
                    if held:  # the first piece is out: what follows is mostly waiting (a streaming server)
                        release()
                        held = False
                    if handle.cancelled.is_set():
                        return
                    handle.put(("item", item))
                handle.put(("end",))
            except BaseException as e:  # noqa: BLE001 - reported to the request, never kills the worker
                handle.put(("error", e))
            finally:
                if held:
                    release()

        def release() -> None:
            self._cpu.release()
            with self._lock:
                self._cpu_wanted -= 1

        def finished(fut) -> None:  # also when a queued question is cancelled before it ran
            with self._lock:
                self.pending -= 1
                if not fut.cancelled():
                    self._finished.append(time.monotonic())

        handle.future = self._pool.submit(run)
        handle.future.add_done_callback(finished)
        return handle

    def cpu_wanted(self) -> bool:
        """Whether questions are doing or waiting for CPU work now (background work gives way to them)."""
        return self._cpu_wanted > 0

    def stats(self) -> dict:
        return {"pending": self.pending, "max_pending": self.max_pending, "workers": self.workers,
                "cpu_slots": self.cpu_slots, "refused": self.refused, "answers_per_s": round(self.rate(), 2)}

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["AskHandle", "AskQueue", "Busy"]
