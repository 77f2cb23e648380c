"""The course assistant under load, measured from outside over real HTTP: many students asking at once
while a teacher's upload is indexed, against a baseline source tree in the same run.

    .venv/bin/python benchmarks/app_load.py [--baseline-src ../main/src] [--clients 10,50,200]
        [--seconds 30] [--mode extractive] [--mode stream]

For each mode, level and tree: a fresh copy of the same two courses (``nlp``: the three en_slides decks;
``gov``: the four ja_gov papers), ``pdfqa serve`` started from that tree in its own process, an untimed
warm-up (10 clients for ``--warmup`` seconds: a server that has been answering a while), then N concurrent
clients (one connection each) that ask, for ``--seconds``, questions about a course drawn at random
(every fifth client asks for server-sent events and times the first event), and obey a refusal's
``Retry-After``. The questions: a few written by hand per course plus one per section heading of the
course ("What is <heading>?", 「<heading>とは何ですか？」; the run prints how many). Meanwhile probes,
from a process of their own (another user's browser: not waiting for the students' event loop), time
``/api/health``, a page image already rendered once, a course's document list, and an upload (the DOT
performance report, 82 pages) that is then indexed in the background of the run. Modes: ``extractive``
(answers on the server's CPU) and ``stream`` (an OpenAI-compatible local server, another process,
streaming its answer in pieces ``--stream-delay`` seconds apart: the server mostly waits).

Reported per run: asks answered and asks/s, p50/p95 latency of answers, refused (429/503 with
Retry-After), lost (connection errors, timeouts, other errors), answered from the wrong course (a context
or citation from the other course), SSE first event p50/p95, and the probes' p50/p95.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))
COURSES = {
    "nlp": ("NLP lectures", sorted((DATA / "pdfs" / "en_slides").glob("*.pdf")), [
        "What was byte pair encoding originally used for?", "What does WordPiece do differently from BPE?",
        "How does the skip-gram model work?", "What is negative sampling?", "What is self-attention?",
        "Why do transformers use positional encodings?", "What is a subword tokenizer?",
        "How are word embeddings evaluated?", "What does the encoder of a transformer consist of?",
        "What problem does the unigram language model tokenizer solve?"]),
    "gov": ("行政のデジタル化", sorted((DATA / "pdfs" / "ja_gov").glob("*.pdf")), [
        "ゼロトラストの概念はいつ、だれが提唱しましたか？", "ゼロトラストではどのようにアクセスを許可しますか？",
        "データポータビリティとは何ですか？", "AIの活用に必要なデータの課題は何ですか？",
        "データ人材のスキルフレームワークとは何ですか？", "境界型防御の問題点は何ですか？",
        "データの相互運用性を高めるには何が必要ですか？", "情報銀行とは何ですか？"]),
}
UPLOAD = DATA / "pdfs" / "en_gov" / "us_DOT2022_performance_report.pdf"
TOKEN = "bench-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# ---------------------------------------------------------------------- processes


class Server:
    """``pdfqa serve`` from a source tree, in its own process group."""

    def __init__(self, src: Path, root: Path, extra: list[str], generators: str, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "pdfqa.cli", "serve", "--collection", str(root), "--port", str(self.port),
               "--admin-token", TOKEN, "--generators", generators, "--generator", generators.split(",")[0],
               "--retrievers", "hybrid", "--answer-timeout", "600", *extra]
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(src)}, cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}); see {self.log.name}")
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


def start_fake_openai(delay: float, log: Path) -> tuple[subprocess.Popen, str]:
    """tests/openai_server.py in a process of its own, answering with a short cited reply streamed in
    pieces ``delay`` seconds apart."""
    code = f"""
import sys, time, re
sys.path.insert(0, {str(ROOT)!r})
from tests.openai_server import serve, message_text
def responder(messages):
    text = message_text(messages[-1])
    words = re.findall(r"\\S+", text)[-24:]
    return "From the first source: " + " ".join(words) + " [1]"
with serve(responder=responder, stream_delay={delay}) as srv:
    print(srv.base_url, flush=True)
    while True:
        time.sleep(3600)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,
                            start_new_session=True)
    url = proc.stdout.readline().strip()
    if not url:
        raise RuntimeError(f"the fake OpenAI server did not start; see {log}")
    return proc, url


def build_root(src: Path, root: Path) -> None:
    """The two courses, indexed once by this tree's server (the on-disk format is shared)."""
    import httpx

    srv = Server(src, root, [], "extractive", root.parent / "build.log")
    try:
        srv.wait_ready()
        h = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=srv.url, timeout=300, headers=h) as c:
            for cid, (_, files, _) in COURSES.items():
                got = c.post("/api/courses", json={"name": cid})
                assert got.status_code == 201 and got.json()["id"] == cid, got.text
                for f in files:
                    r = c.post(f"/api/courses/{cid}/documents", files={"file": (f.name, f.read_bytes(), "application/pdf")})
                    assert r.status_code == 202, r.text
            got = c.post("/api/courses", json={"name": "uploads"})
            assert got.status_code == 201, got.text
            for cid, (_, files, _) in COURSES.items():
                while True:
                    docs = c.get(f"/api/courses/{cid}/documents").json()
                    if len(docs) == len(files) and all(d["status"] in ("ready", "failed") for d in docs):
                        assert all(d["status"] == "ready" for d in docs), docs
                        break
                    time.sleep(1)
    finally:
        srv.stop()


# ---------------------------------------------------------------------- the load


def question_pool(root: Path) -> dict[str, list[str]]:
    """The hand-written questions plus one per distinct section heading of each course."""
    from pdfqa import Collection

    pool = {}
    for cid, (_, _, written) in COURSES.items():
        qs = list(written)
        with Collection.open(root / cid / "collection", readonly=True) as col:
            heads = dict.fromkeys(c.heading_path[-1].strip() for _, c, _ in col.store.iter_chunks() if c.heading_path)
        for h in heads:
            if len(h) > 2:
                qs.append(f"{h}とは何ですか？" if cid == "gov" else f"What is {h}?")
        pool[cid] = list(dict.fromkeys(qs))
    return pool


async def run_level(url: str, clients: int, seconds: float, generator: str, seed: int,
                    questions: dict[str, list[str]], upload: bool = True) -> dict:
    import httpx

    rng = random.Random(seed)
    docs = {cid: {f.name for f in files} for cid, (_, files, _) in COURSES.items()}
    rec: dict = {"ok": [], "ok_at": [], "refused": 0, "lost": 0, "wrong": 0, "sse_first": [], "errors": {}, "probe": {},
                 "upload": None, "done_in_window": 0}
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    timeout = httpx.Timeout(120.0, connect=60.0)  # a student who waited 2 minutes is lost
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as http:
        page = f"/api/courses/nlp/pages/{COURSES['nlp'][1][0].name}/2.png?scale=1.0"
        await http.get(page)  # rendered once: the probes then time the cached image
        t0 = time.monotonic()
        end = t0 + seconds

        def note_error(kind: str) -> None:
            rec["errors"][kind] = rec["errors"].get(kind, 0) + 1

        async def student(i: int) -> None:
            r = random.Random(seed * 1000 + i)
            sse = i % 5 == 0
            while time.monotonic() < end:
                cid = r.choice(list(COURSES))
                q = r.choice(questions[cid])
                body = {"question": q, "generator": generator}
                t = time.monotonic()
                try:
                    if sse:
                        first = None
                        answer = None
                        async with http.stream("POST", f"/api/courses/{cid}/ask", json=body,
                                               headers={"Accept": "text/event-stream"}) as resp:
                            if not await accepted(resp):
                                continue
                            event = None
                            async for line in resp.aiter_lines():
                                if line.startswith("event: "):
                                    event = line[7:]
                                    if event in ("token", "answer") and first is None:
                                        first = time.monotonic() - t
                                elif line.startswith("data: ") and event == "answer":
                                    answer = json.loads(line[6:])
                                elif line.startswith("data: ") and event == "error":
                                    note_error("sse " + json.loads(line[6:]).get("code", "?"))
                        if answer is None:
                            rec["lost"] += 1
                            continue
                        rec["sse_first"].append(first)
                    else:
                        resp = await http.post(f"/api/courses/{cid}/ask", json=body)
                        if not await accepted(resp):
                            continue
                        answer = resp.json()
                except httpx.HTTPError as e:
                    rec["lost"] += 1
                    note_error(type(e).__name__)
                    continue
                took = time.monotonic() - t
                cited = {c["doc"] for c in answer.get("citations", [])} | {c["doc"] for c in answer.get("contexts", [])}
                if not cited <= docs[cid]:
                    rec["wrong"] += 1
                rec["ok"].append(took)
                rec["ok_at"].append(t - t0)
                if time.monotonic() <= end:
                    rec["done_in_window"] += 1

        async def accepted(resp) -> bool:
            """True for a 200; a refusal waits its Retry-After, any other status counts as lost."""
            if resp.status_code in (429, 503):
                await backoff(resp)
                return False
            if resp.status_code != 200:
                rec["lost"] += 1
                note_error(f"http {resp.status_code}")
                return False
            return True

        async def backoff(resp) -> None:
            ra = resp.headers.get("retry-after")
            if ra is None:
                rec["lost"] += 1
                note_error(f"http {resp.status_code} without Retry-After")
                return
            rec["refused"] += 1
            await asyncio.sleep(min(float(ra), max(0.0, end - time.monotonic())) + rng.random() * 0.2)

        # the probes and the upload run in a process of their own, as another user's browser would: in
        # this process they would also wait for this event loop, busy with the students' answers
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            probes = asyncio.get_running_loop().run_in_executor(
                pool, run_probes, url, page, time.time() + (end - time.monotonic()), upload)
            await asyncio.gather(*[student(i) for i in range(clients)])
            probed = await probes
        rec["probe"] = probed["probe"]
        rec["upload"] = probed["upload"]
        for kind, n in probed["errors"].items():
            rec["errors"][kind] = rec["errors"].get(kind, 0) + n
        rec["seconds"] = seconds
        rec["drain"] = time.monotonic() - end
    return rec


def upload_once(url: str) -> float | None:
    """Seconds for one POST of the DOT report to the ``uploads`` course (None when refused)."""
    import httpx

    t = time.monotonic()
    resp = httpx.post(url + "/api/courses/uploads/documents", headers={"Authorization": f"Bearer {TOKEN}"},
                      files={"file": (UPLOAD.name, UPLOAD.read_bytes(), "application/pdf")}, timeout=120)
    return time.monotonic() - t if resp.status_code == 202 else None


def run_probes(url: str, page: str, until: float, upload: bool) -> dict:
    """In a process of its own (see run_level): time ``/api/health``, a cached page image and a course's
    document list every half second until ``until`` (wall clock), and one upload (the DOT report) a few
    seconds in: its POST, answered once the file is checked and queued for indexing."""
    return asyncio.run(_probes(url, page, until, upload))


async def _probes(url: str, page: str, until: float, upload: bool) -> dict:
    import httpx

    out: dict = {"probe": {}, "upload": None, "errors": {}}

    def note_error(kind: str) -> None:
        out["errors"][kind] = out["errors"].get(kind, 0) + 1

    async def probe(http, name: str, path: str) -> None:
        times = out["probe"].setdefault(name, [])
        while time.time() < until:
            t = time.monotonic()
            try:
                resp = await http.get(path)
                if resp.status_code == 200:
                    times.append(time.monotonic() - t)
                else:
                    note_error(f"{name} http {resp.status_code}")
            except httpx.HTTPError as e:
                note_error(f"{name} {type(e).__name__}")
            await asyncio.sleep(0.5)

    async def send_upload(http) -> None:
        await asyncio.sleep(min(3.0, max(0.0, until - time.time()) / 4))
        t = time.monotonic()
        try:
            resp = await http.post("/api/courses/uploads/documents", headers={"Authorization": f"Bearer {TOKEN}"},
                                   files={"file": (UPLOAD.name, UPLOAD.read_bytes(), "application/pdf")})
        except httpx.HTTPError as e:  # e.g. no answer within the 2-minute timeout
            note_error(f"upload {type(e).__name__}")
            return
        out["upload"] = time.monotonic() - t if resp.status_code == 202 else None
        if resp.status_code != 202:
            note_error(f"upload http {resp.status_code}")

    # one connection per probe, as separate users
    timeout = httpx.Timeout(120.0, connect=60.0)
    clients = [httpx.AsyncClient(base_url=url, timeout=timeout) for _ in range(4)]
    try:
        tasks = [probe(clients[0], "health", "/api/health"), probe(clients[1], "page image", page),
                 probe(clients[2], "document list", "/api/courses/nlp/documents")]
        if upload:
            tasks.append(send_upload(clients[3]))
        await asyncio.gather(*tasks)
    finally:
        for c in clients:
            await c.aclose()
    return out


def summary(rec: dict) -> dict:
    ok = rec["ok"]
    return {"answered": len(ok), "asks_per_s": rec["done_in_window"] / rec["seconds"],
            "p50": pct(ok, 50), "p95": pct(ok, 95), "refused": rec["refused"], "lost": rec["lost"],
            "wrong": rec["wrong"], "sse_p50": pct([x for x in rec["sse_first"] if x is not None], 50),
            "sse_p95": pct([x for x in rec["sse_first"] if x is not None], 95),
            "probes": {k: (pct(v, 50), pct(v, 95), len(v)) for k, v in rec["probe"].items()},
            "upload": rec["upload"], "errors": rec["errors"], "drain": rec["drain"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-src", type=Path)
    ap.add_argument("--clients", default="10,50,200")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=15.0, help="untimed seconds of 10 clients before each run")
    ap.add_argument("--mode", action="append", choices=["extractive", "stream"])
    ap.add_argument("--stream-delay", type=float, default=0.05, help="seconds between the fake server's pieces")
    ap.add_argument("--serve-args", default="", help="extra `pdfqa serve` flags for this tree (e.g. limits)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out" / "app_load")
    ap.add_argument("--json", type=Path, help="write every run's figures here")
    args = ap.parse_args()
    modes = args.mode or ["extractive", "stream"]
    levels = [int(x) for x in args.clients.split(",")]
    src = ROOT / "src"
    trees = [("this tree", src, args.serve_args.split())]
    if args.baseline_src:
        trees.append(("baseline", args.baseline_src.resolve(), []))
    args.workdir.mkdir(parents=True, exist_ok=True)
    base_root = args.workdir / "courses"
    if not (base_root / "nlp" / "course.json").exists():
        shutil.rmtree(base_root, ignore_errors=True)
        base_root.mkdir(parents=True)
        print("building the courses once ...", flush=True)
        build_root(src, base_root)
    questions = question_pool(base_root)
    print("command:", " ".join([sys.executable, *sys.argv]))
    print("machine:", machine())
    print("questions:", {k: len(v) for k, v in questions.items()})
    fake, fake_url = (None, None)
    if "stream" in modes:
        fake, fake_url = start_fake_openai(args.stream_delay, args.workdir / "fake_openai.log")
    results = []
    try:
        for mode in modes:
            gen = "extractive" if mode == "extractive" else f"openai-compatible:{fake_url}#fake-chat"
            for level in levels:
                for name, tree, extra in trees:
                    root = args.workdir / f"run-{name.replace(' ', '_')}"
                    shutil.rmtree(root, ignore_errors=True)
                    shutil.copytree(base_root, root)
                    srv = Server(tree, root, extra, gen, args.workdir / f"server-{name.replace(' ', '_')}.log")
                    try:
                        srv.wait_ready()
                        # the upload's own cost (reading the file, PDFium opening every page) on this
                        # server before any question; its indexing runs during the warm-up
                        idle_upload = upload_once(srv.url)
                        # untimed: models and indexes loaded, caches filled, as in a server that has run a while
                        asyncio.run(run_level(srv.url, 10, args.warmup, gen, seed=0, questions=questions,
                                              upload=False))
                        rec = asyncio.run(run_level(srv.url, level, args.seconds, gen, seed=level,
                                                    questions=questions))
                    finally:
                        srv.stop()
                    s = summary(rec)
                    s.update(mode=mode, clients=level, tree=name, upload_idle=idle_upload)
                    results.append(s)
                    print(json.dumps(s, ensure_ascii=False), flush=True)
    finally:
        if fake is not None:
            os.killpg(fake.pid, signal.SIGTERM)
    print("\n| mode | clients | tree | asks/s | p50 / p95 s | refused | lost | wrong course | SSE first event "
          "p50 / p95 s | health p50 / p95 ms | page image p50 / p95 ms | document list p50 / p95 ms | upload POST s (idle → under load) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in results:
        pr = s["probes"]

        def ms(k):
            p50, p95, _ = pr.get(k, (float("nan"),) * 3)
            return f"{p50 * 1000:.0f} / {p95 * 1000:.0f}"
        up = (f"{s['upload_idle']:.2f} → " if s.get("upload_idle") is not None else "") + \
            (f"{s['upload']:.2f}" if s["upload"] is not None else "failed")
        print(f"| {s['mode']} | {s['clients']} | {s['tree']} | {s['asks_per_s']:.1f} | {s['p50']:.2f} / {s['p95']:.2f} | "
              f"{s['refused']} | {s['lost']} | {s['wrong']} | {s['sse_p50']:.2f} / {s['sse_p95']:.2f} | {ms('health')} | "
              f"{ms('page image')} | {ms('document list')} | {up} |")
    if args.baseline_src:
        print()
        for mode in modes:
            for level in levels:
                a = next(s for s in results if s["mode"] == mode and s["clients"] == level and s["tree"] == "this tree")
                b = next(s for s in results if s["mode"] == mode and s["clients"] == level and s["tree"] == "baseline")
                if b["asks_per_s"] > 0:
                    print(f"{mode}, {level} clients: {a['asks_per_s'] / b['asks_per_s']:.1f}x the baseline's asks/s")
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    print("\nafter:", machine())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
