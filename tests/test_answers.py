"""The extractive answer is the fact: spans, list items and table rows from real PDFs; abstention on
unanswerable questions; bad questions; prompted generators' short answers and citations over a real
OpenAI-wire HTTP server."""
import pytest

from pdfqa import PDFQA
from pdfqa.generators.extractive import ExtractiveGenerator
from pdfqa.prompts import NOT_FOUND
from pdfqa.qa import MIN_EVIDENCE
from pdfqa.text.units import answer_units

from .conftest import JA_PAPER, SLIDES, data
from .openai_server import serve


@pytest.mark.parametrize("question,fact,page", [
    ("ゼロトラストの概念はいつ提唱されましたか", "2010", 7),
    ("ゼロトラストの概念を提唱したのは誰ですか", "Kindervag", 7),
])
def test_the_answer_leads_with_the_fact_then_the_cited_sentence(built, question, fact, page):
    ans = PDFQA(built, generator="default").ask(question)
    assert not ans.abstained and ans.generator == "default"
    first, _, rest = ans.answer.partition("\n")
    assert fact in ans.short and ans.short == first and len(ans.short) < 40
    assert "[1]" in rest and fact in rest  # the supporting sentence follows, with its citation
    assert (ans.citations[0].doc, ans.citations[0].page) == (JA_PAPER.name, page)
    assert ans.citations[0].quote in ans.answer.replace("\n", " ")


def test_a_slide_question_is_answered_not_abstained(built):
    ans = PDFQA(built, generator="extractive").ask("What was BPE originally?")
    assert not ans.abstained and "compression" in ans.answer
    assert ans.citations[0].doc == SLIDES.name and ans.citations[0].page == 24


def test_table_rows_keep_their_header_and_are_answers():
    """A real filing's cash-flow statement: the row answering the question comes with its header."""
    from pdfqa.chunking import chunk_document
    from pdfqa.pdf import read_pdf

    content = read_pdf(data("pdfs/en_gov/us_DOT2022_performance_report.pdf"))
    chunks = chunk_document(content)
    rows = [(c, u) for c in chunks for u in answer_units(c.text) if u.kind == "row" and u.header]
    assert rows, "the report's tables give rows with headers"
    chunk, row = rows[0]
    assert row.display() == f"{row.header} / {row.text}"
    label = " ".join(w for w in row.text.split() if any(ch.isalpha() for ch in w))
    ex = ExtractiveGenerator().extract(f"What are the figures for {label}?", [chunk.text])
    assert ex is not None and ex.kind == "row" and ex.short == row.display() and ex.text.endswith("[1]")


def test_list_items_are_units_of_their_own():
    units = answer_units("Tokenizers:\n• BPE merges the most frequent pair\n• WordPiece uses likelihood\nThe end.")
    assert [(u.kind, u.text) for u in units] == [
        ("sentence", "Tokenizers:"), ("item", "BPE merges the most frequent pair"),
        ("item", "WordPiece uses likelihood"), ("sentence", "The end.")]
    ex = ExtractiveGenerator().extract("What does WordPiece use?", [units and "Tokenizers:\n• BPE merges the most "
                                       "frequent pair\n• WordPiece uses likelihood\nThe end."])
    assert ex is not None and "likelihood" in ex.short


def test_mojibake_is_never_an_answer():
    garbled = "۝भେֶେֶӃܳज़ֶ޻෎ തظޙ࢜՝ఔ দӜ஌໵ α΢ϯυɾσβΠϯ෱ԬঁֶӃେֶ ゼロトラスト"
    ex = ExtractiveGenerator().extract("ゼロトラストとは", [garbled, "-- 12 -- 13 -- ||| ゼロ"])
    assert ex is None


@pytest.mark.parametrize("question", ["?", "それは何？", "   "])
def test_questions_without_content_words_abstain(built, question):
    ans = PDFQA(built, generator="default").ask(question)
    assert ans.abstained and not ans.citations and ans.short is None


@pytest.mark.parametrize("question,expected", [
    ("ゼロトラストの市場規模は何億円ですか", NOT_FOUND["ja"]),  # on topic, but the paper gives no market size
    ("Who invented WordPiece?", NOT_FOUND["en"]),  # the deck explains WordPiece, not who made it
])
def test_unanswerable_question_on_the_documents_topic_abstains(built, question, expected):
    ans = PDFQA(built, generator="default").ask(question)
    assert ans.evidence >= MIN_EVIDENCE["e5-small"]  # retrieval found the right document: the answerer itself says no
    assert ans.abstained and ans.answer == expected and not ans.citations


def test_a_retrieval_that_returns_nothing_abstains(built):
    qa = PDFQA(built, generator="default")
    qa.retrieve = lambda *_a, **_k: []
    ans = qa.ask("What was BPE originally?")
    assert ans.abstained and ans.answer == NOT_FOUND["en"]


def test_very_long_questions_are_truncated_and_say_so(built):
    q = "What was BPE originally? " + "BPE byte pair encoding compression " * 60
    ans = PDFQA(built, generator="default").ask(q)
    assert ans.notes and "truncated" in ans.notes[0] and len(ans.question) == 1000
    assert ans.to_json()["notes"] == ans.notes
    assert not ans.abstained and ans.citations[0].doc == SLIDES.name


def test_prompted_generator_short_answer_and_citation_mapping(built):
    """The prompt asks for the short answer first and sources by number; the reply is parsed into the
    short answer, and its [n] markers become the numbered contexts' pages."""
    seen = []

    def responder(messages):
        seen.append(messages)
        user = messages[-1]["content"]
        n = next(i for i in range(1, 6) if f"<<<SOURCE {i}" in user and "Kindervag" in user.split(f"<<<SOURCE {i}")[1].split(">>>")[0])
        return f"John Kindervag [{n}]\nゼロトラストの概念は John Kindervag 氏によって提唱された。[{n}]"

    with serve() as srv:
        srv.responder = responder
        ans = PDFQA(built, generator=f"openai-compatible:{srv.base_url}#m").ask("ゼロトラストの概念を提唱したのは誰ですか")
        assert "短い答え" in seen[0][0]["content"]  # Japanese question: Japanese prompt asking for the short answer
        assert ans.short == "John Kindervag" and not ans.abstained
        assert (ans.citations[0].doc, ans.citations[0].page) == (JA_PAPER.name, 7)
        srv.responder = lambda m: NOT_FOUND["en"]
        ans = PDFQA(built, generator=f"openai-compatible:{srv.base_url}#m").ask("What is WordPiece?")
        assert ans.abstained and ans.short is None and not ans.citations
