"""QA-set loading, metrics (hand-computed and against ranx), `pdfqa eval` JSON and report."""
import csv
import json
import os
import subprocess
import sys

import pytest

from pdfqa.evaluation import QAFormatError, evaluate, load_qa, open_pool
from pdfqa.evaluation.metrics import dedupe, hit_at, mrr_at, ndcg_at, recall_at
from pdfqa.evaluation.report import write_report

from .conftest import EXAMPLES, JA_PAPER, ROOT, SLIDES, data


def test_metrics_by_hand():
    ranked = dedupe(["d3", "d1", "d3", "d2"])
    assert ranked == ["d3", "d1", "d2"]
    assert recall_at(ranked, {"d1", "d2"}, 2) == 0.5 and recall_at(ranked, {"d1", "d2"}, 3) == 1.0
    assert hit_at(ranked, {"d1", "d2"}, 2) == 1.0 and hit_at(ranked, {"d9"}, 3) == 0.0
    assert mrr_at(ranked, {"d2"}, 3) == pytest.approx(1 / 3) and mrr_at(ranked, {"d2"}, 2) == 0.0
    # DCG = 1/log2(3) + 1/log2(4); IDCG = 1 + 1/log2(3)
    assert ndcg_at(ranked, {"d1", "d2"}, 3) == pytest.approx((1 / 1.5849625 + 0.5) / (1 + 1 / 1.5849625), rel=1e-6)


@pytest.mark.parametrize("line,msg", [
    ("{not json", "qa.jsonl:2: not valid JSON"),
    ('{"id": "x", "question": "q", "answers": []}', "qa.jsonl:2: missing field 'doc_ids'"),
    ('{"id": "x", "question": "q", "answers": [], "doc_ids": "a.pdf"}', "'doc_ids' must be a list"),
    ('{"id": "x", "question": "q", "answers": [], "doc_ids": ["a"], "pages": [{"doc": "a", "page": 0}]}', "'pages'"),
    ('{"id": "q1", "question": "q", "answers": [], "doc_ids": ["a"]}', "duplicate id 'q1'"),
])
def test_malformed_qa_lines_are_reported_with_line_numbers(tmp_path, line, msg):
    p = tmp_path / "qa.jsonl"
    p.write_text('{"id": "q1", "question": "ok?", "answers": ["a"], "doc_ids": ["d"]}\n' + line + "\n")
    with pytest.raises(QAFormatError, match=msg.replace("(", r"\(").replace("[", r"\[")):
        load_qa(p)


@pytest.fixture(scope="module")
def squad_slice(tmp_path_factory):
    """30 SQuAD questions and the passages they need, plus 20 distractor passages."""
    qa_all = [json.loads(l) for l in open(data("qa/squad_expmrc/qa.jsonl"))][:30]
    corpus = [json.loads(l) for l in open(data("qa/squad_expmrc/corpus.jsonl"))]
    need = {d for q in qa_all for d in q["doc_ids"]}
    keep = [c for c in corpus if c["doc_id"] in need] + [c for c in corpus if c["doc_id"] not in need][:20]
    d = tmp_path_factory.mktemp("squad")
    (d / "qa.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qa_all))
    (d / "corpus.jsonl").write_text("".join(json.dumps(c) + "\n" for c in keep))
    return d


def test_metrics_agree_with_ranx_on_a_real_run(squad_slice, tmp_path):
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    col = open_pool(tmp_path / "w", corpus=squad_slice / "corpus.jsonl", progress=False)
    items = load_qa(squad_slice / "qa.jsonl")
    res = evaluate(col, items, ["bm25", "e5-small"], k=10, progress=False)
    qrels = Qrels({it.id: {d: 1 for d in it.doc_ids} for it in items})
    for r in res["results"]:
        run = Run({q["id"]: {d: 1.0 / (i + 1) for i, d in enumerate(q["top"])} or {"none": 0.0}
                   for q in r["questions"]})
        ref = ranx_evaluate(qrels, run, ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"])
        for name, value in ref.items():
            assert r["metrics"][name] == pytest.approx(value, abs=1e-4), (r["retriever"], name)
        assert r["metrics"]["recall@5"] > 0.7  # a real retriever on an easy slice


def test_eval_cli_json_contract_and_report(squad_slice, tmp_path):
    out = tmp_path / "out.json"
    rep = tmp_path / "report"
    p = subprocess.run([sys.executable, "-m", "pdfqa.cli", "eval", "--qa", str(squad_slice / "qa.jsonl"),
                        "--corpus", str(squad_slice / "corpus.jsonl"), "--retriever", "bm25", "--retriever", "hybrid",
                        "-k", "5", "--limit", "20", "--json", str(out), "--report", str(rep),
                        "--workdir", str(tmp_path / "w"), "-q"], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert p.returncode == 0, p.stderr
    assert "bm25" in p.stdout and "hybrid" in p.stdout and "recall@5" in p.stdout
    js = json.loads(out.read_text())
    assert js["n_questions"] == 20 and js["k"] == 5 and js["pool"].endswith("corpus.jsonl")
    assert [r["retriever"] for r in js["results"]] == ["bm25", "hybrid"]
    for r in js["results"]:
        assert {"recall@1", "recall@5", "mrr@5", "ndcg@5"} <= set(r["metrics"])
        assert all(f"recall@{j}" in r["metrics"] for j in range(1, 6))
        assert "doc_hit@5" not in r["metrics"]  # passage pool: no page/doc metrics
        assert set(r["seconds"]) == {"index", "query_mean"}
    for name in ("report.md", "results.csv", "per_question.csv", "metrics.png", "recall_at_k.png"):
        assert (rep / name).stat().st_size > 0
    assert (rep / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| hybrid |" in (rep / "report.md").read_text()


def test_pdf_pool_reports_doc_and_page_hits(tmp_path):
    qa = tmp_path / "qa.jsonl"
    rows = [
        {"id": "1", "question": "What was BPE originally?", "answers": ["a compression technique"],
         "doc_ids": [SLIDES.name], "pages": [{"doc": SLIDES.name, "page": 24}]},
        {"id": "2", "question": "ゼロトラストの概念を提唱したのは誰か", "answers": ["John Kindervag"],
         "doc_ids": [JA_PAPER.name], "pages": [{"doc": JA_PAPER.name, "page": 7}]},
    ]
    qa.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    col = open_pool(tmp_path / "w", pdfs=EXAMPLES, progress=False)
    res = evaluate(col, load_qa(qa), ["hybrid"], k=5, progress=False)
    m = res["results"][0]["metrics"]
    assert m["doc_hit@5"] == 1.0 and m["page_hit@5"] == 1.0 and m["recall@1"] == 1.0
    # the pool is cached: a second open does no indexing work
    col2 = open_pool(tmp_path / "w", pdfs=EXAMPLES, progress=False)
    assert col2.store.generation == col.store.generation


def test_answer_metrics_japanese_aware():
    from pdfqa.evaluation.answers import citation_precision, exact_match, token_f1

    assert exact_match("小笠原諸島 [1]", ["小笠原諸島"]) == 1.0
    assert exact_match("東アジア", ["東アジアの広範囲"]) == 0.0
    assert token_f1("東アジアの広範囲", ["東アジア"]) == pytest.approx(2 * (4 / 8) * 1 / (4 / 8 + 1))
    assert token_f1("The Eiffel tower, Paris.", ["Eiffel Tower"]) == pytest.approx(0.8)
    assert exact_match("ＡＩ", ["AI"]) == 1.0  # NFKC: full-width = half-width
    assert citation_precision([("a.pdf", [3]), ("a.pdf", [9])], {"a.pdf"}, {("a.pdf", 3)}) == 0.5
    assert citation_precision([("a.pdf", [9]), ("b.pdf", [1])], {"a.pdf"}, set()) == 0.5
    assert citation_precision([], {"a.pdf"}, set()) is None


def test_eval_with_generator_scores_answers(built, tmp_path):
    qa = tmp_path / "qa.jsonl"
    rows = [{"id": "1", "question": "ゼロトラストの概念を提唱したのは誰か", "answers": ["John Kindervag"],
             "doc_ids": [JA_PAPER.name], "pages": [{"doc": JA_PAPER.name, "page": 7}]},
            {"id": "2", "question": "What is the boiling point of mercury?", "answers": ["356.7 °C"],
             "doc_ids": [SLIDES.name]}]
    qa.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    res = evaluate(built, load_qa(qa), ["hybrid"], k=5, progress=False, generator="extractive")
    a = res["results"][0]["answer"]
    assert set(a) == {"contains_gold", "em", "f1", "citation_precision", "abstention_rate", "seconds_mean", "questions"}
    assert a["abstention_rate"] == 0.5 and a["citation_precision"] == 1.0 and a["contains_gold"] == 0.5
    # every question's answer is there to read, the failures included
    by_id = {q["id"]: q for q in a["questions"]}
    assert by_id["1"]["short_answer"] and "Kindervag" in by_id["1"]["short_answer"] and by_id["1"]["f1"] > 0.5
    assert by_id["1"]["citations"] == [{"doc": JA_PAPER.name, "page": 7}] and not by_id["1"]["abstained"]
    assert by_id["2"]["abstained"] and by_id["2"]["contains_gold"] == 0.0 and by_id["2"]["short_answer"] is None
    assert a["f1"] == pytest.approx((by_id["1"]["f1"] + by_id["2"]["f1"]) / 2, abs=1e-4)
    files = write_report(res, tmp_path / "rep")
    assert tmp_path / "rep" / "answers.csv" in files
    md = (tmp_path / "rep" / "report.md").read_text()
    worst = md.split("**Worst answers, hybrid**", 1)[1]
    assert worst.index("`2`") < worst.index("`1`")  # the abstention is listed first
    rows = list(csv.DictReader(open(tmp_path / "rep" / "answers.csv")))
    assert {r["id"] for r in rows} == {"1", "2"} and rows[0]["citations"]


def test_qa_generate_offline_and_with_an_llm(built, tmp_path):
    from pdfqa.evaluation.synthetic import generate_questions

    from .openai_server import serve

    rows = list(generate_questions(built, "extractive", 4, seed=1))
    assert len(rows) == 4 and len({r["question"] for r in rows}) == 4
    chunks = {c.chunk_id: c for _, c, _ in built.store.iter_chunks()}
    for r in rows:
        gold = chunks[r["chunk_id"]]
        assert r["answers"][0] in gold.text and r["doc_ids"] == [gold.doc]
        assert [p["page"] for p in r["pages"]] == gold.pages
        assert "____" in r["question"]

    def responder(messages):  # a "model" that asks about the passage's first sentence, or invents an answer
        text = messages[-1]["content"].split("\n\n", 1)[1].split(":", 1)[-1].strip()
        first = text.split("\n")[-1][:60]
        if "BPE" in text:
            return json.dumps({"question": "What is BPE (byte pair encoding) originally?", "answer": "compression technique"})
        return json.dumps({"question": f"What does this say: {first}?", "answer": "an answer the passage never gives"})

    with serve() as srv:
        srv.responder = responder
        rows = list(generate_questions(built, f"openai-compatible:{srv.base_url}#m", 3))
    assert rows and all(r["answers"] == ["compression technique"] for r in rows)
    assert len(rows) == 1  # the duplicates of the same question were dropped
