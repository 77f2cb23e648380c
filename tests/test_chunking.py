import re

import pytest

from pdfqa.chunking import build_blocks, chunk_document, is_slide_deck, remove_page_furniture
from pdfqa.embeddings import get_embedder
from pdfqa.pdf import read_pdf
from pdfqa.text import split_sentences

from .conftest import JA_PAPER, SLIDES, data


@pytest.fixture(scope="module")
def e5():
    return get_embedder("e5-small")


def _chunks(path, e5, max_tokens=256, context=True):
    return chunk_document(read_pdf(path), count_tokens=e5.count_tokens, max_tokens=max_tokens, context=context)


def test_slide_deck_gives_one_chunk_per_slide_titled(e5):
    content = read_pdf(SLIDES)
    assert is_slide_deck(content.pages)
    chunks = _chunks(SLIDES, e5)
    assert all(c.kinds == ["slide"] and len(c.pages) == 1 for c in chunks)
    by_page = {c.page: c for c in chunks}
    assert by_page[24].heading_path == ["Byte Pair Encoding (BPE)"]
    assert "compression technique" in by_page[24].text
    # the beamer navigation sidebar and "24 / 31" page numbers are furniture, not content
    assert not any(re.search(r"\b\d+ / 31\b", c.text) for c in chunks)
    assert sum("Edit distance" in c.text for c in chunks) < 5


def test_headings_build_a_nested_path(e5):
    chunks = _chunks(JA_PAPER, e5)
    paths = [c.heading_path for c in chunks]
    assert ["２ 境界型セキュリティとゼロトラスト", "２.４ ゼロトラストとは"] in paths
    blocks = build_blocks(read_pdf(JA_PAPER))
    heads = [b for b in blocks if b.kind == "heading"]
    level = {b.text: b.level for b in heads}
    # "２.４" one level below "２" (levels 1 and 2 are kept for a filing's PART and Item)
    assert level["２.４ ゼロトラストとは"] == level["２ 境界型セキュリティとゼロトラスト"] + 1 > 2
    assert {"paragraph", "heading"} <= {b.kind for b in blocks}


def test_running_header_is_removed(e5):
    chunks = _chunks(JA_PAPER, e5)
    assert not any("ディスカッションペーパー 2020 年 6 月" in c.text for c in chunks)
    header = "政府 CIO 補佐官等ディスカッションペーパー"
    assert sum(header in c.text for c in chunks) <= 1  # the title page may say it once


@pytest.mark.parametrize("rel,max_tokens", [
    ("examples", 256), ("pdfs/en_gov/us_DOT2022_performance_report.pdf", 256),
    ("pdfs/ja_gov/cio_dp2020_01_AI_data.pdf", 128),
])
def test_no_chunk_exceeds_the_token_budget(e5, rel, max_tokens):
    paths = [SLIDES, JA_PAPER] if rel == "examples" else [data(rel)]
    for path in paths:
        for c in _chunks(path, e5, max_tokens=max_tokens):
            assert e5.count_tokens(c.embed_text()) <= max_tokens + 2, (c.chunk_id, c.text[:80])
            assert e5.count_tokens(c.embed_text()) + e5.passage_overhead <= e5.max_tokens
            assert len(c.pages) <= 2 and c.pages == sorted(c.pages)


def test_no_text_is_lost(e5):
    content = read_pdf(JA_PAPER)
    blocks_text = "".join("".join(b.text.split()) for b in build_blocks(read_pdf(JA_PAPER)))
    chunk_text = "".join("".join((c.text + "".join(c.heading_path)).split()) for c in _chunks(JA_PAPER, e5))
    kept = remove_page_furniture(read_pdf(JA_PAPER).pages)
    page_text = "".join("".join(p.text.split()) for p in kept)
    # furniture (running header, page numbers, contents entries) is the only thing dropped
    assert len("".join("".join(p.text.split()) for p in content.pages)) > len(page_text)
    assert len(blocks_text) >= 0.97 * len(page_text)
    checked = 0
    for page in remove_page_furniture(read_pdf(JA_PAPER).pages):
        flat = "".join(page.text.split())
        for sentence in re.findall(r"[^。]{10,}。", flat):
            assert sentence[-20:] in chunk_text, (page.number, sentence)
            checked += 1
    assert checked > 50


def test_long_blocks_split_at_sentence_ends(e5):
    # a small budget forces splits; the document title (long in Japanese) would leave too little of it
    chunks = _chunks(data("pdfs/ja_gov/cio_dp2020_01_AI_data.pdf"), e5, max_tokens=96, context="headings")
    long_para = [c for c in chunks if c.kinds == ["paragraph"] and e5.count_tokens(c.text) > 60]
    assert long_para
    ends = sum(1 for c in long_para if c.text.rstrip()[-1] in "。）」.")
    assert ends / len(long_para) >= 0.75  # the rest: sentences running over a page break or a text box


def test_chunk_metadata_is_complete(e5):
    content = read_pdf(JA_PAPER)
    doc_text_len = sum(len(p.text) + 1 for p in content.pages)
    chunks = _chunks(JA_PAPER, e5)
    ids = [c.chunk_id for c in chunks]
    assert len(set(ids)) == len(ids)
    for c in chunks:
        assert c.doc == JA_PAPER.name and c.doc_hash == content.doc_hash
        assert 0 <= c.char_start < c.char_end <= doc_text_len
        assert c.kinds and c.page >= 1


def test_sentence_splitter_japanese_and_english():
    assert split_sentences("これは文です。次の文！最後？") == ["これは文です。", "次の文！", "最後？"]
    assert split_sentences("It costs $3.50 today. See Fig. 2 for e.g. details. Done!") == [
        "It costs $3.50 today.", "See Fig. 2 for e.g. details.", "Done!"]
