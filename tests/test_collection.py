import json
import shutil
import sqlite3

import numpy as np
import pytest

from pdfqa import Collection
from pdfqa.errors import CollectionError, EmbedderMismatchError, UnknownComponentError

from .conftest import EXAMPLES, JA_PAPER, SLIDES, data


def test_search_finds_the_right_page_in_english_and_japanese(built):
    hits = built.search("What is byte pair encoding?", k=3)
    assert hits[0].chunk.doc == SLIDES.name and hits[0].chunk.page in (24, 25, 26)
    assert hits[0].score >= hits[1].score >= hits[2].score
    ja = built.search("ゼロトラストの概念を提唱したのは誰ですか", k=3)
    assert ja[0].chunk.doc == JA_PAPER.name
    assert any("Kindervag" in h.chunk.text for h in ja)


def test_hit_json_matches_the_cli_contract(built):
    h = built.search("WordPiece", k=1)[0].to_json()
    assert {"doc", "page", "pages", "page_label", "score", "text", "chunk_id"} <= set(h)
    assert isinstance(h["page"], int) and h["pages"][0] == h["page"] and isinstance(h["score"], float)


def test_langchain_retriever(built):
    docs = built.as_retriever(k=2).invoke("SentencePiece")
    assert len(docs) == 2 and docs[0].metadata["doc"] == SLIDES.name
    assert {"chunk_id", "pages", "page_label", "heading_path", "score"} <= set(docs[0].metadata)


def test_reindexing_unchanged_files_does_no_work(fresh_copy):
    gen = fresh_copy.store.generation
    report = fresh_copy.index([EXAMPLES], progress=False)
    assert [f.status for f in report.files] == ["unchanged", "unchanged"]
    assert fresh_copy.store.generation == gen


def test_changed_file_replaces_its_chunks(fresh_copy, tmp_path):
    # a file of the same name with other content: its old chunks go, the new ones come
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(data("pdfs/en_slides/elte_nlp_8-neural_embeddings.pdf"), d / SLIDES.name)
    before = {cid for _, c, _ in fresh_copy.store.iter_chunks(SLIDES.name) for cid in [c.chunk_id]}
    report = fresh_copy.index([d / SLIDES.name], progress=False)
    assert report.files[0].status == "indexed"
    after = {c.chunk_id for _, c, _ in fresh_copy.store.iter_chunks(SLIDES.name)}
    assert before and after and not before & after
    assert fresh_copy.search("word2vec skip-gram", k=1)[0].chunk.doc == SLIDES.name
    assert not any("Byte Pair" in h.chunk.text for h in fresh_copy.search("byte pair encoding merges", k=5))
    assert len(fresh_copy._index("e5-small")) == fresh_copy.store.count_chunks()


def test_identical_text_is_never_embedded_twice(fresh_copy, tmp_path):
    twin = tmp_path / "twin.pdf"
    shutil.copy(JA_PAPER, twin)
    report = fresh_copy.index([twin], progress=False)
    f = report.files[0]
    assert f.status == "indexed" and f.chunks > 0 and f.embedded == 0


def test_remove_document(fresh_copy):
    n = fresh_copy.store.count_chunks()
    assert fresh_copy.remove(SLIDES.name)
    assert not fresh_copy.remove(SLIDES.name)
    assert fresh_copy.store.count_chunks() < n
    assert all(h.chunk.doc != SLIDES.name for h in fresh_copy.search("tokenization", k=10))
    reopened = Collection.open(fresh_copy.path)
    assert len(reopened._index("e5-small")) == reopened.store.count_chunks()
    assert [d.doc for d in reopened.documents()] == [JA_PAPER.name]


def test_other_embedder_explains_the_mismatch(built):
    with pytest.raises(EmbedderMismatchError, match=r"no index for embedder 'minilm'.*e5-small \(384-d\)"):
        Collection.open(built.path, embedder="minilm")
    with pytest.raises(UnknownComponentError, match="known: e5-small, minilm"):
        Collection.open(built.path, embedder="bogus", create=True).index([])


def test_second_embedder_indexes_the_same_chunks(fresh_copy):
    n = fresh_copy.store.count_chunks()
    col = Collection.open(fresh_copy.path, embedder="minilm", create=True)
    col.index([], progress=False)
    assert set(col.embedders) == {"e5-small", "minilm"}
    assert col.store.count_chunks() == n and len(col._index("minilm")) == n
    hit = col.search("What is WordPiece?", k=1, embedder="minilm")[0]
    assert hit.chunk.doc == SLIDES.name and hit.retriever == "minilm"
    # a new file is embedded by both
    report = col.index([data("pdfs/en_slides/elte_nlp_11-transformers.pdf")], progress=False)
    assert report.indexed and len(col._index("minilm")) == len(col._index("e5-small")) == col.store.count_chunks()


def test_no_pickle_on_disk(built):
    files = [p for p in built.path.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".json", ".sqlite", ".faiss", ".lock", "", ".sqlite-wal", ".sqlite-shm",
                                         ".npy", ".npz"}
    for p in files:
        assert not p.read_bytes()[:2].startswith(b"\x80"), f"{p} looks like a pickle"
        if p.suffix == ".npy":
            np.load(p, allow_pickle=False)  # raises on object arrays
    manifest = json.loads((built.path / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["embedders"]["e5-small"] | {} == manifest["embedders"]["e5-small"]
    assert {"dim", "normalized", "index_file"} <= set(manifest["embedders"]["e5-small"])


def test_stale_or_missing_faiss_file_is_rebuilt_from_stored_vectors(fresh_copy):
    path = fresh_copy.path
    expected = [h.chunk.chunk_id for h in fresh_copy.search("regular expressions", k=5)]
    fresh_copy.close()
    (path / "indexes" / "e5-small.faiss").unlink()
    col = Collection.open(path)
    assert [h.chunk.chunk_id for h in col.search("regular expressions", k=5)] == expected
    # an index file from an older generation (crash between SQLite commit and index rename)
    meta = path / "indexes" / "e5-small.json"
    col._save_indexes()
    m = json.loads(meta.read_text()) if meta.exists() else {}
    m["generation"] = -5
    meta.write_text(json.dumps(m))
    col2 = Collection.open(path)
    assert [h.chunk.chunk_id for h in col2.search("regular expressions", k=5)] == expected


def test_unsupported_format_version_is_refused(fresh_copy):
    m = json.loads((fresh_copy.path / "manifest.json").read_text())
    m["format_version"] = 99
    (fresh_copy.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CollectionError, match="format version 99 is not supported"):
        Collection.open(fresh_copy.path)


def test_missing_collection_explains(tmp_path):
    with pytest.raises(CollectionError, match="no pdfqa collection here"):
        Collection.open(tmp_path / "nothing")


def test_batch_with_bad_files_goes_on(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.pdf").write_bytes(b"")
    (bad / "notes.pdf").write_text("hello")
    shutil.copy(data("pdfs/scanned/ocrmypdf_linn.pdf"), bad / "scan.pdf")
    col = Collection.open(tmp_path / "c", create=True)
    # OCR off: the scan stands for a file with nothing to index (tests/test_ocr.py reads it with OCR)
    report = col.index([bad, JA_PAPER, tmp_path / "missing.pdf"], progress=False, ocr="never")
    assert [f.doc for f in report.indexed] == [JA_PAPER.name]
    errors = {f.doc: f.error for f in report.failed}
    assert set(errors) == {"empty.pdf", "notes.pdf", "scan.pdf", "missing.pdf"}
    assert "empty file" in errors["empty.pdf"] and "not a PDF" in errors["notes.pdf"]
    assert "no text layer" in errors["scan.pdf"] and "not found" in errors["missing.pdf"]
    assert report.ok and [d.doc for d in col.documents()] == [JA_PAPER.name]


def test_vectors_in_sqlite_match_faiss(built):
    db = sqlite3.connect(built.path / "chunks.sqlite")
    n_vec = db.execute("SELECT COUNT(*) FROM vectors WHERE embedder='e5-small'").fetchone()[0]
    assert n_vec >= 1
    ids, vecs = built.store.index_vectors("e5-small", 384)
    assert len(ids) == built.store.count_chunks()
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-3)


def test_removing_every_document_leaves_a_usable_empty_collection(fresh_copy):
    for d in fresh_copy.documents():
        assert fresh_copy.remove(d.doc)
    assert fresh_copy.store.count_chunks() == 0
    for spec in ("hybrid", "bm25", "tfidf", "dense"):
        assert fresh_copy.search("tokenization", k=3, retriever=spec) == []
    report = fresh_copy.index([JA_PAPER], progress=False)
    assert report.indexed and fresh_copy.search("ゼロトラスト", k=1)[0].chunk.doc == JA_PAPER.name


def test_changed_file_reembeds_only_its_new_chunks(fresh_copy, tmp_path):
    """A deck that gained two slides: its other chunks come from the embedding cache; the other file
    of the folder is recognised as unchanged."""
    from pypdf import PdfReader, PdfWriter

    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(JA_PAPER, d / JA_PAPER.name)
    w = PdfWriter()
    w.append(str(SLIDES))
    extra = PdfReader(str(data("pdfs/en_slides/elte_nlp_8-neural_embeddings.pdf")))
    for i in (5, 6):
        w.add_page(extra.pages[i])
    with open(d / SLIDES.name, "wb") as fh:
        w.write(fh)
    known = {h for _, _, h in fresh_copy.store.iter_chunks()}
    report = fresh_copy.index([d], progress=False)
    by_doc = {f.doc: f for f in report.files}
    assert by_doc[JA_PAPER.name].status == "unchanged"
    slides = by_doc[SLIDES.name]
    new = {h for _, _, h in fresh_copy.store.iter_chunks(SLIDES.name)} - known
    assert slides.status == "indexed" and slides.pages == 31 + 2
    assert 0 < slides.embedded == len(new) <= 4 < slides.chunks
    assert report.stage_seconds.get("embed:e5-small", 0) > 0
    assert len(fresh_copy._index("e5-small")) == fresh_copy.store.count_chunks()


def test_a_file_failing_mid_pipeline_does_not_stop_or_damage_the_others(tmp_path, monkeypatch):
    """Fault injection: the embedder fails on one file's texts (as a remote embedder might). That file
    is reported failed with the cause, the files before and after it are indexed, the collection
    stays consistent, and indexing it again later works."""
    from pdfqa.embeddings import get_embedder

    files = [data("pdfs/ja_gov/cio_dp2021_10_data_portability.pdf"), JA_PAPER,
             data("pdfs/en_gov/ntsb_20080102X00002.pdf")]
    real = get_embedder("e5-small")

    class FailsOnZeroTrust(type(real)):
        def __init__(self):  # share the loaded model; only embed_passages differs
            self.__dict__.update(real.__dict__)

        def embed_passages(self, texts):
            if any("ゼロトラスト" in t for t in texts):
                raise RuntimeError("server refused the batch")
            return real.embed_passages(texts)

    col = Collection.open(tmp_path / "c", create=True)
    monkeypatch.setattr(col, "embedder", lambda spec: FailsOnZeroTrust())
    report = col.index(files, progress=False)
    status = {f.doc: f.status for f in report.files}
    assert status == {files[0].name: "indexed", JA_PAPER.name: "failed", files[2].name: "indexed"}
    err = next(f.error for f in report.failed)
    assert JA_PAPER.name in err and "server refused the batch" in err
    assert sorted(d.doc for d in col.documents()) == sorted([files[0].name, files[2].name])
    assert len(col._index("e5-small")) == col.store.count_chunks()
    monkeypatch.undo()
    again = col.index(files, progress=False)
    assert {f.doc: f.status for f in again.files}[JA_PAPER.name] == "indexed"
    assert col.search("ゼロトラストを提唱したのは誰", k=1)[0].chunk.doc == JA_PAPER.name


def _age_chunking(col, version: int = 1) -> None:
    """Make the collection look as if an older pdfqa (chunking ``version``) had indexed it."""
    with col.store.db:
        col.store.db.execute("UPDATE documents SET chunking=?", (version,))


def test_documents_of_an_older_chunking_are_rechunked_not_mixed(fresh_copy):
    from pdfqa.chunking import CHUNKING_VERSION

    _age_chunking(fresh_copy)
    assert {d.doc for d in fresh_copy.stale_documents()} == {SLIDES.name, JA_PAPER.name}
    before = {c.chunk_id: c.text for _, c, _ in fresh_copy.store.iter_chunks()}
    report = fresh_copy.index([], progress=False)  # no new files: the stale ones are redone from their paths
    assert sorted(f.doc for f in report.indexed) == sorted([SLIDES.name, JA_PAPER.name])
    assert all(f.embedded == 0 for f in report.indexed)  # same text: every vector came from the cache
    assert not fresh_copy.stale_documents()
    assert {d.chunking for d in fresh_copy.documents()} == {CHUNKING_VERSION}
    assert {c.chunk_id: c.text for _, c, _ in fresh_copy.store.iter_chunks()} == before
    assert fresh_copy.search("What is byte pair encoding?", k=1)[0].chunk.doc == SLIDES.name


def test_an_older_chunking_whose_file_is_gone_is_refused_with_the_fix(tmp_path, built):
    pdf = tmp_path / "notes.pdf"
    shutil.copy(JA_PAPER, pdf)
    col = Collection.open(tmp_path / "c", create=True)
    col.index([pdf], progress=False)
    _age_chunking(col)
    pdf.unlink()
    gen = col.store.generation
    with pytest.raises(CollectionError, match=r"chunked by an older pdfqa.*notes\.pdf.*pdfqa remove"):
        col.index([SLIDES], progress=False)
    assert col.store.generation == gen and [d.doc for d in col.documents()] == ["notes.pdf"]  # nothing mixed in
    col.close()


def test_collections_written_before_titles_existed_still_open(fresh_copy):
    """Format 1 collections from before this change have no title/chunking columns: read as untitled v1."""
    path = fresh_copy.path
    fresh_copy.close()
    db = sqlite3.connect(path / "chunks.sqlite")
    db.executescript("""
        CREATE TABLE d2 AS SELECT doc, doc_hash, path, bytes, pages, chunks, skipped, reader, indexed_at FROM documents;
        DROP TABLE documents; ALTER TABLE d2 RENAME TO documents;""")
    db.close()
    ro = Collection.open(path, readonly=True)
    assert {d.chunking for d in ro.documents()} == {1} and {d.title for d in ro.documents()} == {""}
    assert ro.search("What is byte pair encoding?", k=1)[0].chunk.title == ""
    ro.close()
    rw = Collection.open(path)  # a writer adds the columns and re-chunks on the next index
    assert len(rw.stale_documents()) == 2
    rw.close()


def test_chunks_of_a_page_show_what_was_indexed(built):
    on3 = built.chunks(JA_PAPER.name, page=3)
    assert on3 and all(3 in c.pages for c in on3)
    assert all(c.title == "政府情報システムにおけるゼロトラスト適用に向けた考え方" for c in on3)
    assert any("表 １-1 用語の定義" in c.text for c in on3)
    emb = built.embedded_text(on3[0])
    assert emb.endswith(on3[0].text) and emb.startswith(on3[0].title)
    assert [c.chunk_id for c in built.chunks(SLIDES.name)] == sorted(c.chunk_id for c in built.chunks(SLIDES.name))
    with pytest.raises(CollectionError, match="no document 'nope.pdf'; documents: "):
        built.chunks("nope.pdf")
