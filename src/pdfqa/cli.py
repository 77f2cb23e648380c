"""The ``pdfqa`` command line: index, search, info, remove, ask, chat, eval, serve (a thin layer over the library)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import quiet
from .errors import PdfqaError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Question answering over PDFs: index PDFs into a collection, then search it.")
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)

CollectionOpt = typer.Option(..., "--collection", "-c", help="Collection: a directory, milvus:PATH.db (Milvus Lite) "
                             "or milvus://HOST:PORT/NAME (a Milvus server; token from MILVUS_TOKEN).")
BaseUrlOpt = typer.Option(None, "--base-url", help="OpenAI-compatible server of openai: embedders (e.g. "
                          "http://localhost:11434/v1); default: the one the index was built with, else OPENAI_BASE_URL.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Also show third-party warnings, logs and progress bars.")


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", envvar="PDFQA_VERBOSE",
                                       help="Show third-party warnings, logs and progress bars (transformers, "
                                            "onnxruntime, tokenizers, Ray, ...), silenced by default.")) -> None:
    quiet.configure(verbose)


def _verbose(flag: bool) -> None:
    """A command's own ``-v`` (``pdfqa ask ... -v`` as well as ``pdfqa -v ask ...``)."""
    if flag:
        quiet.configure(True)


def _say(*parts, console: Console | None = None) -> None:
    """Print a line made of plain strings and ``(text, style)`` pairs. User text (file names, answers,
    errors, hints) is never read as rich markup: ``notes[final].pdf`` and ``pip install 'pdfqa[openai]'``
    print as they are."""
    (console or out).print(Text.assemble(*parts), highlight=False)


def _fail(e: Exception, code: int = 2) -> None:
    _say(("error:", "red"), f" {e}", console=err)
    raise typer.Exit(code)


def _stdout_for_pdfqa_only() -> None:
    """Keep the process's standard output for pdfqa's own output: file descriptor 1 and ``sys.stdout``
    go to stderr for the rest of the process; ``out`` and :func:`_dump` write to a copy of the original.

    Ray's core worker, its threads and the processes it starts print notices (a retried task, a dead
    worker) to fd 1 or ``sys.stdout``, some after the pipeline has returned or at exit: they must not
    land in ``--json``'s document."""
    global out, _stdout
    sys.stdout.flush()
    kept = os.fdopen(os.dup(1), "w", encoding=sys.stdout.encoding or "utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _stdout = kept
    out = Console(file=kept, soft_wrap=True, width=None if kept.isatty() else 160)


_stdout = None  # pdfqa's output stream once _stdout_for_pdfqa_only() has run


def _dump(obj) -> None:
    stream = _stdout or sys.stdout
    stream.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
    stream.flush()


@app.command()
def index(
    paths: List[Path] = typer.Argument(None, help="PDF files and folders (searched recursively for *.pdf)."),
    collection: str = CollectionOpt,
    embedder: Optional[str] = typer.Option(None, "--embedder", "-e", help="Embedder spec (default e5-small). On an "
                                           "existing collection, adds an index for it over the same chunks."),
    chunk_tokens: int = typer.Option(256, help="Maximum chunk size in the embedder's tokens (new collections)."),
    context: str = typer.Option("title+headings", "--context", help="What is embedded with each chunk's text (new "
                                "collections): title+headings, headings or none."),
    index_kind: Optional[str] = typer.Option(None, "--index-kind", help="FAISS index: flat (exact, default), "
                                             "hnsw or ivfpq (large collections)."),
    reader: Optional[str] = typer.Option(None, "--reader", help="PDF reader (new or empty collections; default: the "
                                         "collection's, pdfium for new ones): pdfium, pypdf, pdfplumber, camelot or "
                                         "unstructured (the last three need their extra, e.g. pdfqa[pdfplumber])."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    base_url: Optional[str] = BaseUrlOpt,
    ray: Optional[str] = typer.Option(None, "--ray", help="Read, chunk and embed on Ray Data: `local` starts a Ray "
                                      "cluster on this machine, an ADDRESS joins one (needs pdfqa[ray])."),
    ocr: str = typer.Option("auto", "--ocr", help="OCR pages: auto (those without a usable text layer, when "
                            "Tesseract is installed), always, never."),
    verbose: bool = VerboseOpt,
) -> None:
    """Index PDFs: unchanged files are skipped, changed files replaced; failures listed with causes."""
    from .collection import Collection

    _verbose(verbose)
    try:
        if ray:
            from .ray_ingest import require_ray

            require_ray()
        col = Collection.open(collection, embedder=embedder, create=True, chunk_tokens=chunk_tokens, base_url=base_url,
                              context=context, **({"reader": reader} if reader else {}))
        if ray:
            _stdout_for_pdfqa_only()
        report = col.index(paths or [], progress=not quiet and not as_json,
                           on_file=None if as_json else _print_file, executor="ray" if ray else "local",
                           ray_address=ray or "local", ocr=ocr, reader=reader)
        if index_kind:
            col.set_index_kind(index_kind, embedder)
    except PdfqaError as e:
        _fail(e)
    if as_json:
        _dump(report.to_json())
    else:
        info_pages = sum(f.pages for f in report.indexed)
        info_chunks = sum(f.chunks for f in report.indexed)
        _say(f"{len(report.indexed)} indexed ({info_pages} pages, {info_chunks} chunks), "
             f"{len(report.unchanged)} unchanged, {len(report.failed)} failed in {report.seconds:.1f}s")
        for f in report.failed:
            _say("  ", ("skipped", "red"), f" {f.error}")
        for note in report.notes:
            _say(f"note: {note}", console=err)
    if not paths:
        raise typer.Exit(0)
    raise typer.Exit(0 if report.ok else 1)


def _print_file(f) -> None:
    if f.status == "failed":
        _say(("✗", "red"), f" {f.error}", console=err)
        return
    note = f" ({len(f.skipped_pages)} pages skipped: {f.skipped_pages[0][1]}…)" if f.skipped_pages else ""
    extra = "" if f.status == "unchanged" else f", {f.embedded} embedded, {f.seconds:.1f}s"
    if f.ocr_pages:
        extra += f", {f.ocr_pages} pages OCR'd (confidence ≥ {f.ocr_confidence:.2f})"
    _say(("✓", "green"), f" {f.doc}: {f.status}, {f.pages} pages, {f.chunks} chunks{extra}{note}")


@app.command()
def search(
    query: str = typer.Argument(..., help="What to look for (any language)."),
    collection: str = CollectionOpt,
    k: int = typer.Option(5, "-k", help="Number of hits."),
    embedder: Optional[str] = typer.Option(None, "--embedder", "-e", help="Dense search in this embedder's index."),
    retriever: Optional[str] = typer.Option(None, "--retriever", "-r", help="Retriever spec (default hybrid; e.g. "
                                            "bm25, e5-small, bm25+minilm, hybrid|mmr:0.5)."),
    as_json: bool = typer.Option(False, "--json", help="Print hits as JSON."),
    base_url: Optional[str] = BaseUrlOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Print the top-k chunks for QUERY with file, page and score."""
    from .collection import Collection

    _verbose(verbose)
    try:
        with Collection.open(collection, embedder=embedder, readonly=True, base_url=base_url) as col:
            hits = col.search(query, k=k, retriever=retriever)
    except PdfqaError as e:
        _fail(e)
    if as_json:
        _dump({"query": query, "hits": [h.to_json() for h in hits]})
        return
    for i, h in enumerate(hits, 1):
        c = h.chunk
        label = f" (p. {c.page_label})" if c.page_label and c.page_label != str(c.page) else ""
        pages = "-".join(map(str, (c.pages[0], c.pages[-1]))) if len(c.pages) > 1 else str(c.page)
        head = " > ".join(c.heading_path)
        _say((f"{i}. {c.doc}", "bold"), f" page {pages}{label}  score {h.score:.3f}",
             *((("  " + head, "dim"),) if head else ()))
        text = " ".join(c.text.split())
        _say(f"   {text[:300]}{'…' if len(text) > 300 else ''}")


@app.command()
def info(collection: str = CollectionOpt,
         as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
         verbose: bool = VerboseOpt) -> None:
    """Show the collection's documents, chunk counts, embedders and format."""
    from .collection import Collection

    _verbose(verbose)
    try:
        with Collection.open(collection, readonly=True) as col:
            data = col.info()
    except PdfqaError as e:
        _fail(e)
    if as_json:
        _dump(data)
        return
    _say((data["path"], "bold"), f": {data['n_documents']} documents, {data['n_chunks']} chunks, "
         f"format v{data['format_version']}")
    for spec, e in data["embedders"].items():
        default = " (default)" if spec == data["default_embedder"] else ""
        per = f", {e['bytes_per_chunk']:.0f} bytes/chunk" if e.get("bytes_per_chunk") else ""
        _say(f"  embedder {spec}{default}: {e['dim']}-d, {e['index_kind']} index, {e['vectors']} vectors{per}")
    table = Table("document", "pages", "chunks", "skipped pages")
    for d in data["documents"]:
        table.add_row(Text(d["doc"]), str(d["pages"]), str(d["chunks"]), str(len(d["skipped"])))
    out.print(table)


@app.command()
def chunks(
    doc: str = typer.Argument(..., help="Document name (file name) as shown by `pdfqa info`."),
    collection: str = CollectionOpt,
    page: Optional[int] = typer.Option(None, "--page", "-p", help="Only the chunks on this page (1-based)."),
    as_json: bool = typer.Option(False, "--json", help="Print the chunks as JSON."),
    verbose: bool = VerboseOpt,
) -> None:
    """Show what was indexed for DOC: each chunk's pages, kinds, context (title > headings) and text."""
    from .collection import Collection

    _verbose(verbose)
    try:
        with Collection.open(collection, readonly=True) as col:
            found = col.chunks(doc, page)
            rows = [{**c.to_metadata(), "context": c.context, "text": c.text, "embedded": col.embedded_text(c)}
                    for c in found]
    except PdfqaError as e:
        _fail(e)
    if as_json:
        _dump({"doc": doc, "page": page, "chunks": rows})
        return
    if not rows:
        _say(f"no chunks on page {page} of {doc} (skipped, blank, or furniture only)")
    for r in rows:
        pages = f"pages {r['pages'][0]}-{r['pages'][-1]}" if len(r["pages"]) > 1 else f"page {r['page']}"
        _say(f"── {r['chunk_id']} · {pages} · {', '.join(r['kinds'])}")
        if r["context"]:
            _say((f"   {r['context']}", "dim"))
        _say(r["text"])
        _say()


@app.command()
def remove(doc: str = typer.Argument(..., help="Document name (file name) as shown by `pdfqa info`."),
           collection: str = CollectionOpt, verbose: bool = VerboseOpt) -> None:
    """Delete a document and its chunks from the collection."""
    from .collection import Collection

    _verbose(verbose)
    try:
        with Collection.open(collection) as col:
            found = col.remove(doc)
            names = [d.doc for d in col.documents()]
    except PdfqaError as e:
        _fail(e)
    if not found:
        _fail(PdfqaError(f"no document {doc!r} in {collection}; documents: {', '.join(names) or 'none'}"), 1)
    _say(f"removed {doc}")


def _adhoc_collection(files: list[Path], quiet: bool):
    """``pdfqa ask Q FILE.pdf ...``: index the files into a cache keyed by their paths, then reuse it."""
    import hashlib
    import os

    from .collection import Collection

    key = hashlib.sha1("\0".join(sorted(str(f.resolve()) for f in files)).encode()).hexdigest()[:16]
    root = Path(os.environ.get("PDFQA_CACHE", Path.home() / ".cache" / "pdfqa")) / "adhoc" / key
    col = Collection.open(root, create=True)
    report = col.index(files, progress=not quiet)
    for f in report.failed:
        _say(("✗", "red"), f" {f.error}", console=err)
    if not report.ok:
        raise PdfqaError("none of the files could be indexed")
    return col


def _load_model(gen) -> None:
    """Load the generator's model before answering, saying so once (on a terminal; the line goes away
    when done). The extractive answerers (``default``, ``extractive``) load nothing."""
    if getattr(gen, "extractive", False):
        return
    if err.is_terminal:
        with err.status(f"loading {gen.spec} (once per process)…", spinner="dots"):
            gen.warm_up()
    else:
        gen.warm_up()


def _print_citations(ans) -> None:
    for c in ans.citations:
        pages = f"pages {c.pages[0]}-{c.pages[-1]}" if len(c.pages) > 1 else f"page {c.page}"
        label = f" (printed {c.page_label})" if c.page_label and c.page_label != str(c.page) else ""
        label += f" (OCR, confidence {c.ocr_confidence:.2f})" if c.ocr else ""
        _say(f"  [{c.marker}] {c.doc}, {pages}{label}: “{c.quote[:160]}”")


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question (any language)."),
    files: List[Path] = typer.Argument(None, help="PDFs to answer from (indexed into a cache) instead of --collection."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="Collection: a directory or a milvus: "
                                             "location (see `pdfqa index --help`)."),
    generator: str = typer.Option("default", "--generator", "-g", help="Generator spec."),
    retriever: Optional[str] = typer.Option(None, "--retriever", "-r", help="Retriever spec (default hybrid)."),
    k: int = typer.Option(5, "-k", help="Contexts to retrieve."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
    stream: bool = typer.Option(False, "--stream", help="Print tokens as they are generated."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars (indexing PDF files given here)."),
    base_url: Optional[str] = BaseUrlOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Answer QUESTION from a collection (or from PDF files), citing file and page."""
    from .collection import Collection
    from .qa import PDFQA, Answer

    _verbose(verbose)
    if (collection is None) == (not files):
        _fail(PdfqaError("give either --collection DIR or PDF files after the question"))
    try:
        col = Collection.open(collection, readonly=True, base_url=base_url) if collection else _adhoc_collection(files, quiet or as_json)
        qa = PDFQA(col, generator=generator, retriever=retriever, k=k)
        _load_model(qa.generator)
        ans = None
        for item in qa.stream(question):
            if isinstance(item, Answer):
                ans = item
            elif stream and not as_json:
                sys.stdout.write(item)
                sys.stdout.flush()
    except PdfqaError as e:
        _fail(e)
    if as_json:
        _dump(ans.to_json())
        return
    if stream:
        sys.stdout.write("\n")
    else:
        _say(ans.answer)
    _print_citations(ans)
    if ans.dropped_markers:
        _say("  ", (f"{ans.dropped_markers} citation marker(s) pointed at no source and were dropped", "dim"))
    _say("  ", (f"{ans.generator} · {ans.retriever} · {ans.timings.get('total', 0):.1f}s", "dim"))


@app.command()
def chat(
    collection: str = CollectionOpt,
    generator: str = typer.Option("default", "--generator", "-g", help="Generator spec."),
    retriever: Optional[str] = typer.Option(None, "--retriever", "-r", help="Retriever spec."),
    k: int = typer.Option(5, "-k", help="Contexts to retrieve."),
    base_url: Optional[str] = BaseUrlOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """An interactive session: answers stream in with citations; follow-ups keep the context."""
    from .collection import Collection
    from .qa import PDFQA, Answer

    _verbose(verbose)
    try:
        conv = PDFQA(Collection.open(collection, readonly=True, base_url=base_url), generator=generator, retriever=retriever,
                     k=k).chat()
    except PdfqaError as e:
        _fail(e)
    _say(("Ask about the documents; an empty line or Ctrl-D quits.", "dim"))
    while True:
        try:
            question = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not question:
            break
        try:
            for item in conv.stream(question):
                if isinstance(item, Answer):
                    sys.stdout.write("\n")
                    _print_citations(item)
                else:
                    sys.stdout.write(item)
                    sys.stdout.flush()
        except PdfqaError as e:
            _say(("error:", "red"), f" {e}", console=err)


@app.command()
def similar(
    positive: List[str] = typer.Argument(..., help="Words to add (e.g. 自衛隊); prefix a word with - to subtract."),
    vectors: str = typer.Option("ja-ginza", "--vectors", "-v", help="ja-ginza, glove-50 or a word2vec file."),
    negative: List[str] = typer.Option([], "--minus", "-m", help="Words to subtract (e.g. 海)."),
    topn: int = typer.Option(10, "-n", help="How many neighbours."),
    as_json: bool = typer.Option(False, "--json"),
    verbose: bool = typer.Option(False, "--verbose", help="Also show third-party warnings and logs."),
) -> None:
    """Nearest words in word-vector space: `pdfqa similar 自衛隊 --minus 海` (analogies by adding/subtracting)."""
    from .wordvectors import most_similar

    _verbose(verbose)
    pos = [w for w in positive if not w.startswith("-") or len(w) == 1]
    neg = list(negative) + [w[1:] for w in positive if w.startswith("-") and len(w) > 1]
    try:
        result = most_similar(vectors, positive=pos, negative=neg, topn=topn)
    except PdfqaError as e:
        _fail(e)
    if as_json:
        _dump({"vectors": vectors, "positive": pos, "negative": neg,
               "similar": [{"word": w, "score": round(float(sc), 4)} for w, sc in result]})
        return
    for w, sc in result:
        _say(f"{sc:6.3f}  {w}")


@app.command("qa-generate")
def qa_generate(
    collection: str = CollectionOpt,
    generator: str = typer.Option("extractive", "--generator", "-g", help="Who writes the questions: an LLM spec, "
                                  "or extractive (offline cloze questions)."),
    n: int = typer.Option(20, "-n", help="Number of questions."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write JSONL here (default: stdout)."),
    seed: int = typer.Option(0, "--seed"),
    verbose: bool = VerboseOpt,
) -> None:
    """Synthetic questions with their gold chunk and page, deduplicated and checked for answerability."""
    from .collection import Collection
    from .evaluation.synthetic import generate_questions

    _verbose(verbose)
    rows = []
    try:
        with Collection.open(collection, readonly=True) as col:
            for row in generate_questions(col, generator, n, seed=seed):
                rows.append(row)
                if output is None:
                    sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    except PdfqaError as e:
        _fail(e)
    if output is not None:
        output.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        _say(f"wrote {len(rows)} questions to {output}", console=err)
    if len(rows) < n:
        _say((f"only {len(rows)} of {n} questions passed the answerability checks", "yellow"), console=err)


@app.command()
def serve(
    collection: Path = typer.Option(..., "--collection", "-c", help="Directory holding the courses (one pdfqa "
                                    "collection each, with their PDFs); created if missing."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but a loopback address "
                             "exposes the app and needs --admin-token."),
    port: int = typer.Option(8000, "--port", "-p", help="Port to listen on."),
    admin_token: Optional[str] = typer.Option(None, "--admin-token", envvar="PDFQA_ADMIN_TOKEN", show_default=False,
                                              help="Token that creating courses, uploading and removing PDFs "
                                                   "need (Authorization: Bearer TOKEN); asking stays open."),
    generator: str = typer.Option("default", "--generator", "-g", help="Generator preselected in the page."),
    generators: str = typer.Option("default,extractive", "--generators",
                                   help="Generators offered in the page (comma-separated specs)."),
    retrievers: str = typer.Option("hybrid,dense,bm25", "--retrievers",
                                   help="Retrievers offered (comma-separated specs; the first is preselected)."),
    max_upload_mb: float = typer.Option(50, "--max-upload-mb", help="Largest PDF accepted, in MB."),
    max_pages: int = typer.Option(500, "--max-pages", help="Most pages per PDF."),
    answer_timeout: float = typer.Option(120, "--answer-timeout", help="Seconds before a question is given up "
                                         "with a message (a slow or stuck generator)."),
    store: Optional[str] = typer.Option(None, "--store", help="Keep new courses' collections in Milvus: "
                                        "milvus:PATH.db or milvus://HOST:PORT/PREFIX (PDFs stay in the course folder)."),
    ask_workers: int = typer.Option(16, "--ask-workers", help="Questions answered at once (threads; most wait for "
                                    "a streaming generator)."),
    cpu_slots: Optional[int] = typer.Option(None, "--cpu-slots", help="Of those, how many do CPU work (retrieval, "
                                            "the extractive answer) at a time; default: one per core."),
    max_pending_asks: int = typer.Option(64, "--max-pending-asks", help="Questions admitted at most (answered or "
                                         "waiting); beyond, 503 with Retry-After instead of an ever longer wait."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also log every request and third-party warnings."),
) -> None:
    """Run the course-material assistant: a web page where teachers load lecture PDFs into courses and
    students ask questions and open the cited pages (http://HOST:PORT/)."""
    def specs(text: str) -> list[str]:
        return [s.strip() for s in text.split(",") if s.strip()]

    _verbose(verbose)
    try:
        from .app import serve as run_app

        run_app(collection, host=host, port=port, admin_token=admin_token or None, generator=generator,
                generators=specs(generators), retrievers=specs(retrievers), max_upload_mb=max_upload_mb,
                max_pages=max_pages, answer_timeout=answer_timeout, store=store,
                ask_workers=ask_workers, cpu_slots=cpu_slots,
                max_pending_asks=max_pending_asks, log_level="info" if quiet.is_verbose() else "warning")
    except ImportError as e:
        _fail(PdfqaError(f"the web app needs its extra: pip install 'pdfqa[app]' ({e})"))
    except (PdfqaError, ValueError) as e:
        _fail(e)


@app.command("eval")
def eval_(
    qa: Path = typer.Option(..., "--qa", help="QA set (JSONL: id, question, answers, doc_ids[, pages])."),
    pdfs: Optional[Path] = typer.Option(None, "--pdfs", help="Pool: a folder of PDFs."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Pool: passages (JSONL: doc_id, title, text)."),
    retriever: List[str] = typer.Option(["hybrid"], "--retriever", "-r", help="Retriever spec (repeatable)."),
    k: int = typer.Option(10, "-k", help="Cut-off for the metrics."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate the first N questions only."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON here."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write report.md, CSVs and plots here."),
    workdir: str = typer.Option(".pdfqa-eval", "--workdir", help="Cache of parsed, chunked, embedded pools: a "
                                "directory, or a milvus: location (each pool one Milvus collection)."),
    context: str = typer.Option("title+headings", "--context", help="What is embedded with each chunk (a new pool): "
                                "title+headings, headings or none."),
    generator: Optional[str] = typer.Option(None, "--generator", "-g", help="Also answer and score the answers."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    base_url: Optional[str] = BaseUrlOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Compare retrievers on a QA set: one table, optional JSON and a report with plots."""
    from .evaluation import evaluate, load_qa, open_pool
    from .evaluation.report import table_rows, write_report

    _verbose(verbose)
    try:
        items = load_qa(qa)
        col = open_pool(workdir, pdfs=pdfs, corpus=corpus, progress=not quiet, base_url=base_url, context=context)
        run = evaluate(col, items, list(retriever), k=k, limit=limit, progress=not quiet, qa_name=str(qa),
                       pool_name=str(pdfs or corpus), generator=generator)
    except PdfqaError as e:
        _fail(e)
    header, rows = table_rows(run)
    table = Table(*header, title=f"{run['n_questions']} questions, k={k}")
    for r in rows:
        table.add_row(*map(Text, r))
    out.print(table)
    for r in run["results"]:
        if "answer" in r:
            a = r["answer"]
            _say(f"{r['retriever']} → {generator}: contains gold {a['contains_gold']:.3f}, EM {a['em']:.3f}, "
                 f"F1 {a['f1']:.3f}, citation precision {a['citation_precision']:.3f}, abstained "
                 f"{a['abstention_rate']:.1%}, {a['seconds_mean']:.2f}s/answer")
    command = " ".join(["pdfqa", *map(str, sys.argv[1:])])
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        slim = {**run, "results": [{kk: v for kk, v in r.items() if kk != "questions"} for r in run["results"]]}
        json_out.write_text(json.dumps(slim, ensure_ascii=False, indent=2) + "\n")
    if report:
        for f in write_report(run, report, command=command):
            _say(f"wrote {f}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
