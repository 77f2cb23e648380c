"""Local transformers generators (hf:, rinna:) and llama.cpp error paths, with tiny models built here.

No network: tokenizers are trained on a few sentences in the test, models are randomly initialised
from small configs (or, for rinna, wired by hand so that they emit a known token sequence).
"""
from __future__ import annotations

import json
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from pdfqa.errors import PdfqaError  # noqa: E402
from pdfqa.generators.transformers import (  # noqa: E402
    CONTEXT_CAP,
    HFGenerator,
    MemoryEstimate,
    RinnaGenerator,
    TextPostprocessor,
    build_rinna_prompt,
    check_fits,
    detect_rinna_style,
    from_spec,
    merge_system_message,
    parse_spec,
)

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a question about the document and an answer with the page number",
    "hello world this is a small test of the tokenizer and the model",
    "retrieval augmented generation finds passages and then writes an answer",
    "ユーザー システム こんにちは 日本語 の 文章 です",
    # many distinct words, so that most merged tokens start with a space and random output has word breaks
    " ".join(f"{a}{b}" for a in ("al", "be", "co", "da", "el", "fi", "go", "ha", "in", "jo", "ka", "lo")
             for b in ("ment", "ness", "ing", "tion", "able", "ful", "ous", "ward", "ship", "hood")),
]
# a template in the usual shape that renders every role
PLAIN_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                  "{% if add_generation_prompt %}<|assistant|>{% endif %}")
# like Mistral-7B-Instruct's: only alternating user/assistant turns, a system message raises
MISTRAL_LIKE_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] }}</s>{% endif %}{% endfor %}")

MSGS = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "what is the answer"}]


def make_tokenizer(*, chat_template: str | None = None, added: tuple[str, ...] = (), vocab_size: int = 700):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    kwargs = {"chat_template": chat_template} if chat_template else {}
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                 unk_token="<unk>", clean_up_tokenization_spaces=False, **kwargs)
    if added:
        hf.add_tokens(list(added))
    return hf


def save_llama(path, tok, *, max_positions: int = 512, seed: int = 0):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=max_positions,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return save_llama(tmp_path_factory.mktemp("hf") / "tiny-llama", make_tokenizer(chat_template=PLAIN_TEMPLATE))


@pytest.fixture(scope="module")
def llama(llama_dir):
    g = from_spec(f"hf:{llama_dir}#max_new_tokens=24")
    g.warm_up()
    return g


# ------------------------------------------------------------------------------------------ hf: with a tiny Llama
def test_generate_returns_only_the_new_text(llama, llama_dir):
    assert type(llama) is HFGenerator and llama.spec == f"hf:{llama_dir}#max_new_tokens=24"
    prompt = llama.build_prompt(MSGS)
    assert prompt == "<|system|>Answer briefly.</s><|user|>what is the answer</s><|assistant|>"
    out = llama.generate(MSGS)
    assert isinstance(out, str) and out.strip()
    # the same greedy decoding done by hand: decode only the tokens after the prompt
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama_dir)
    model = AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
    full = model.generate(**ids, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id)
    n = ids["input_ids"].shape[1]
    assert out == tok.decode(full[0, n:], skip_special_tokens=True)
    assert out != tok.decode(full[0], skip_special_tokens=True)
    # max_new_tokens per call bounds the reply
    short = llama.generate(MSGS, max_new_tokens=3)
    assert short == tok.decode(full[0, n:n + 3], skip_special_tokens=True)


def test_stream_pieces_join_to_the_greedy_text(llama):
    pieces = list(llama.stream(MSGS))
    assert len(pieces) > 1, pieces  # really streamed, not one final string
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == llama.generate(MSGS)


def test_stream_can_be_closed_early(llama):
    it = llama.stream(MSGS, max_new_tokens=200)
    first = next(it)
    it.close()  # stops the background generation; must not hang
    assert first and llama.generate(MSGS, max_new_tokens=200).startswith(first)


def test_count_tokens_and_context_window(llama, llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama_dir)
    text = "the quick brown fox asks a question"
    assert llama.count_tokens(text) == len(tok(text, add_special_tokens=False)["input_ids"]) > 3
    assert llama.context_window == 512  # max_position_embeddings of the config
    assert from_spec(f"hf:{llama_dir}#context_window=300").context_window == 300
    assert llama.describe()["context_window"] == 512


def test_context_window_is_capped_and_read_without_loading(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 1_048_576}))
    g = from_spec(f"hf:{tmp_path}")
    assert g.context_window == CONTEXT_CAP
    assert g._model is None and g._tok is None


def test_prompt_longer_than_the_window_is_refused(llama_dir):
    g = from_spec(f"hf:{llama_dir}#context_window=20")
    with pytest.raises(PdfqaError, match="context window is 20"):
        g.generate([{"role": "user", "content": "the quick brown fox jumps over the lazy dog " * 5}])


def test_system_message_merged_when_the_template_refuses_it(tmp_path):
    path = save_llama(tmp_path / "mistral-like", make_tokenizer(chat_template=MISTRAL_LIKE_TEMPLATE))
    g = from_spec(f"hf:{path}#max_new_tokens=5")
    # the template really refuses the system role as given
    with pytest.raises(Exception, match="alternate"):
        g._load_tokenizer().apply_chat_template(MSGS, tokenize=False, add_generation_prompt=True)
    assert g.build_prompt(MSGS) == "<s>[INST] Answer briefly.\n\nwhat is the answer [/INST]"
    history = [*MSGS, {"role": "assistant", "content": "forty two"}, {"role": "user", "content": "why"}]
    assert g.build_prompt(history) == ("<s>[INST] Answer briefly.\n\nwhat is the answer [/INST]forty two</s>"
                                       "[INST] why [/INST]")
    assert isinstance(g.generate(MSGS), str)
    assert g._merge_system  # remembered: the next prompt does not try the refused form again


def test_template_refusing_other_things_is_an_error(tmp_path):
    path = save_llama(tmp_path / "m", make_tokenizer(chat_template=MISTRAL_LIKE_TEMPLATE))
    g = from_spec(f"hf:{path}")
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(PdfqaError, match="chat template refused"):
        g.build_prompt(bad)


def test_merge_system_message():
    assert merge_system_message(MSGS) == [{"role": "user", "content": "Answer briefly.\n\nwhat is the answer"}]
    only_system = [{"role": "system", "content": "S"}, {"role": "assistant", "content": "A"}]
    assert merge_system_message(only_system) == [{"role": "user", "content": "S"}, {"role": "assistant", "content": "A"}]
    no_system = [{"role": "user", "content": "q"}]
    assert merge_system_message(no_system) == no_system and merge_system_message(no_system) is not no_system
    with pytest.raises(PdfqaError, match="bad chat message"):
        merge_system_message([{"role": "tool", "content": "x"}])


def test_model_without_chat_template_is_refused(tmp_path):
    path = save_llama(tmp_path / "no-template", make_tokenizer())
    g = from_spec(f"hf:{path}")
    assert type(g) is HFGenerator
    with pytest.raises(PdfqaError, match="has no chat template"):
        g.generate(MSGS)
    with pytest.raises(PdfqaError, match="has no chat template"):  # refused every time, not only the first
        g.count_tokens("x")


def test_memory_estimate_refuses_a_model_that_does_not_fit(llama_dir):
    g = from_spec(f"hf:{llama_dir}#memory_budget_gb=0.00001")
    est = g.estimate_memory()
    n_params = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(llama_dir).parameters())
    assert est.params == n_params and est.dtype == "float32"  # the CPU default
    assert est.weight_bytes == 4 * n_params
    with pytest.raises(PdfqaError) as err:
        g.warm_up()
    msg = str(err.value)
    assert msg.startswith(f"hf:{llama_dir}#memory_budget_gb=0.00001: needs ~")
    assert "float32 weights" in msg and "the machine has 10.0 kB available" in msg and "dtype=bfloat16" in msg
    assert g._model is None  # refused before loading
    # enough budget: loads
    ok = from_spec(f"hf:{llama_dir}#memory_budget_gb=1")
    ok.warm_up()
    assert ok._model is not None


def test_memory_message_for_a_gpu():
    mistral = MemoryEstimate(7_241_732_096, 6_979_321_856, "float16")
    with pytest.raises(PdfqaError) as err:
        check_fits("hf:mistralai/Mistral-7B-Instruct-v0.2", mistral, int(11.8e9))
    assert str(err.value) == ("hf:mistralai/Mistral-7B-Instruct-v0.2: needs ~14.5 GB (float16 weights, plus ~10% "
                              "working room), the GPU has 11.8 GB free; try load_in_4bit=true (~4.2 GB)")
    four = MemoryEstimate(7_241_732_096, 6_979_321_856, "float16", "4bit")
    check_fits("m", four, int(15.5e9))  # 4-bit Mistral fits a 16 GB card
    with pytest.raises(PdfqaError, match="needs ~4.2 GB .*use a smaller model"):
        check_fits("m", four, int(3e9))


def test_quantisation_needs_cuda_and_bitsandbytes(llama_dir):
    g = from_spec(f"hf:{llama_dir}#load_in_4bit=true")
    assert g.device == "cuda" and g.quantization == "4bit"
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the CPU-only error path does not apply")
    with pytest.raises(PdfqaError, match="no CUDA GPU"):
        g.warm_up()
    with pytest.raises(PdfqaError, match="needs a CUDA GPU"):
        from_spec(f"hf:{llama_dir}#load_in_8bit=true,device=cpu")
    with pytest.raises(PdfqaError, match="one of load_in_4bit and load_in_8bit"):
        HFGenerator(str(llama_dir), load_in_4bit=True, load_in_8bit=True)


def test_load_failures_name_the_model(tmp_path):
    with pytest.raises(PdfqaError, match="no model folder '/no/such/model'"):
        from_spec("hf:/no/such/model").warm_up()
    g = from_spec("hf:pdfqa-test/no-such-model#local_files_only=true")
    with pytest.raises(PdfqaError) as err:
        g.warm_up()
    msg = str(err.value)
    assert "'pdfqa-test/no-such-model'" in msg and "local folder" in msg and "hub" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(PdfqaError, match="could not load the config of"):
        from_spec(f"hf:{tmp_path / 'empty'}").warm_up()


def test_spec_parsing():
    prefix, model, opts = parse_spec("hf:mistralai/Mistral-7B-Instruct-v0.2#device=cuda,dtype=bfloat16,"
                                     "load_in_4bit=true,max_new_tokens=64,temperature=0.5")
    assert (prefix, model) == ("hf", "mistralai/Mistral-7B-Instruct-v0.2")
    assert opts == {"device": "cuda", "dtype": "bfloat16", "load_in_4bit": True, "max_new_tokens": 64,
                    "temperature": 0.5}
    assert parse_spec("rinna:rinna/bilingual-gpt-neox-4b-instruction-ppo#style=bilingual")[2] == {"style": "bilingual"}
    with pytest.raises(PdfqaError, match="unknown option 'style=nl'; known: .*device"):
        parse_spec("hf:x/y#style=nl")
    with pytest.raises(PdfqaError, match="load_in_4bit='maybe' is not a valid bool"):
        parse_spec("hf:x/y#load_in_4bit=maybe")
    with pytest.raises(PdfqaError, match="unknown dtype"):
        from_spec("hf:x/y#dtype=int3")
    with pytest.raises(PdfqaError, match="not a transformers generator spec"):
        parse_spec("hf:")
    g = from_spec("hf:x/y#temperature=0.7,top_p=0.9")
    assert g._sampling({}) == {"do_sample": True, "temperature": 0.7, "top_p": 0.9}
    assert g._sampling({"temperature": 0})["do_sample"] is False


# ------------------------------------------------------------------------------------------ rinna prompts
def test_rinna_prompt_bilingual_matches_the_model_card():
    card = [{"role": "user", "content": "Hello, you are an assistant that helps me learn Japanese."},
            {"role": "assistant", "content": "Sure, what can I do for you?"},
            {"role": "user", "content": "VRはなんですか。"}]
    assert build_rinna_prompt(card, "bilingual") == (
        "ユーザー: Hello, you are an assistant that helps me learn Japanese.\n"
        "システム: Sure, what can I do for you?\n"
        "ユーザー: VRはなんですか。\n"
        "システム: ")


def test_rinna_prompt_nl_matches_the_model_card():
    card = [{"role": "user", "content": "日本のおすすめの観光地を教えてください。"},
            {"role": "assistant", "content": "どの地域の観光地が知りたいですか？"},
            {"role": "user", "content": "渋谷の観光地を教えてください。"}]
    assert build_rinna_prompt(card, "nl") == (
        "ユーザー: 日本のおすすめの観光地を教えてください。<NL>システム: どの地域の観光地が知りたいですか？"
        "<NL>ユーザー: 渋谷の観光地を教えてください。<NL>システム: ")


def test_rinna_prompt_system_history_and_newlines():
    msgs = [{"role": "system", "content": "資料に基づいて答えてください。\n出典を示すこと。"},
            {"role": "user", "content": "  質問1\r\n二行目  "},
            {"role": "assistant", "content": "答え1"},
            {"role": "user", "content": "質問2"}]
    assert build_rinna_prompt(msgs, "bilingual") == (
        "ユーザー: 資料に基づいて答えてください。\n出典を示すこと。\n\n質問1\n二行目\n"
        "システム: 答え1\nユーザー: 質問2\nシステム: ")
    assert build_rinna_prompt(msgs, "nl") == (
        "ユーザー: 資料に基づいて答えてください。<NL>出典を示すこと。<NL><NL>質問1<NL>二行目"
        "<NL>システム: 答え1<NL>ユーザー: 質問2<NL>システム: ")
    assert "\n" not in build_rinna_prompt(msgs, "nl")


def test_rinna_prompt_errors():
    with pytest.raises(PdfqaError, match="unknown rinna prompt style"):
        build_rinna_prompt([{"role": "user", "content": "x"}], "chatml")
    with pytest.raises(PdfqaError, match="no messages"):
        build_rinna_prompt([], "nl")
    with pytest.raises(PdfqaError, match="bad chat message"):
        build_rinna_prompt([{"role": "bot", "content": "x"}], "nl")


def test_detect_rinna_style():
    assert detect_rinna_style("rinna/bilingual-gpt-neox-4b-instruction-ppo") == "bilingual"
    assert detect_rinna_style("rinna/bilingual-gpt-neox-4b-instruction-sft") == "bilingual"
    assert detect_rinna_style("rinna/japanese-gpt-neox-3.6b-instruction-sft") == "nl"
    assert detect_rinna_style("rinna/japanese-gpt-neox-3.6b-instruction-ppo") == "nl"
    assert detect_rinna_style("/home/u/.cache/huggingface/hub/models--rinna--japanese-gpt-neox-3.6b-instruction-sft-v2"
                              "/snapshots/abc") == "nl"
    for other in ("rinna/japanese-gpt-neox-3.6b", "rinna/youri-7b-instruction", "rinna/nekomata-7b-instruction",
                  "mistralai/Mistral-7B-Instruct-v0.2", "EleutherAI/gpt-neox-20b"):
        assert detect_rinna_style(other) is None, other
    # by the files of a folder with an uninformative name
    neox = {"model_type": "gpt_neox"}
    assert detect_rinna_style("my-model", config=neox, tokenizer_config={"tokenizer_class": "T5Tokenizer"},
                              has_nl_piece=True) == "nl"
    assert detect_rinna_style("my-model", config=neox, tokenizer_config={"tokenizer_class": "T5Tokenizer"},
                              has_nl_piece=False) == "bilingual"
    assert detect_rinna_style("my-model", config={"model_type": "gpt_neox",
                                                  "_name_or_path": "rinna/bilingual-gpt-neox-4b-instruction-sft"}) \
        == "bilingual"
    assert detect_rinna_style("my-model", config=neox, tokenizer_config={"tokenizer_class": "GPTNeoXTokenizerFast"}) \
        is None
    assert detect_rinna_style("my-model", config=neox, tokenizer_config={"tokenizer_class": "T5Tokenizer",
                                                                         "chat_template": "{{x}}"}) is None


def test_postprocessor_streams_like_the_whole_text():
    post = TextPostprocessor({"<NL>": "\n"}, ("\nユーザー:",))
    pieces = ["答え", "<N", "L>二行", "目<", "NL>ユー", "ザー: 次", "の質問"]
    out = [post.feed(p) for p in pieces] + [post.finish()]
    assert "".join(out) == "答え\n二行目"
    assert post.stopped
    assert out[1] == ""  # "<N" is held back until it is known not to be text
    assert TextPostprocessor({"<NL>": "\n"}, ("\nユーザー:",)).process("".join(pieces)) == "答え\n二行目"
    # a marker prefix that turns out not to be one is released
    post = TextPostprocessor({"<NL>": "\n"}, ("\nユーザー:",))
    assert [post.feed("a<NL>ユ"), post.feed("ニーク"), post.finish()] == ["a", "\nユニーク", ""]
    assert TextPostprocessor({"<NL>": "\n"}).process("x<N") == "x<N"


# ------------------------------------------------------------------------------------------ rinna: tiny GPT-NeoX
X, NL, Y, USER = "答え", "<NL>", "です", "ユーザー"


def save_wired_neox(path, chain_after_prompt: list[str], *, prompt_tail_token: str | None = None):
    """A tiny GPT-NeoX whose layers are switched off, so the next token depends on the current token
    only; its embeddings and output head are wired so that greedy decoding after the prompt emits
    ``chain_after_prompt`` and then ``</s>``. Returns the folder."""
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    tok = make_tokenizer(added=(NL, X, Y, USER))
    torch.manual_seed(0)
    config = GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           vocab_size=len(tok), max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = AutoModelForCausalLM.from_config(config).eval()
    prompt_tail = tok(build_rinna_prompt([{"role": "user", "content": "質問"}], "nl"),
                      add_special_tokens=False)["input_ids"][-1]
    ids = [prompt_tail] + [tok.convert_tokens_to_ids(t) for t in chain_after_prompt] + [tok.eos_token_id]
    assert len(set(ids[:-1])) == len(ids) - 1, "each token may appear once in the chain"
    with torch.no_grad():
        for layer in model.gpt_neox.layers:
            for lin in (layer.attention.dense, layer.mlp.dense_4h_to_h):
                lin.weight.zero_()
                lin.bias.zero_()
        emb, head = model.gpt_neox.embed_in.weight, model.get_output_embeddings().weight
        head.zero_()
        for dim, (cur, nxt) in enumerate(zip(ids, ids[1:])):
            emb[cur] = 0.0
            emb[cur, dim] = 10.0
            head[nxt, dim] = 5.0
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def rinna_nl_dir(tmp_path_factory):
    # the folder's name is rinna's hub id: an hf: spec detects the format from it
    path = tmp_path_factory.mktemp("r") / "rinna" / "japanese-gpt-neox-3.6b-instruction-sft"
    return save_wired_neox(path, [X, NL, Y])


def test_hf_spec_detects_rinna_and_turns_nl_into_newlines(rinna_nl_dir):
    g = from_spec(f"hf:{rinna_nl_dir}#max_new_tokens=10")
    assert type(g) is RinnaGenerator and g.style == "nl" and g.languages == frozenset({"ja"})
    assert g.repetition_penalty == 1.1 and g.temperature == 0.0
    msgs = [{"role": "system", "content": "指示"}, {"role": "user", "content": "質問\n続き"}]
    assert g.build_prompt(msgs) == "ユーザー: 指示<NL><NL>質問<NL>続き<NL>システム: "
    assert g.generate(msgs) == "答え\nです"
    pieces = list(g.stream(msgs))
    assert "".join(pieces) == "答え\nです" and len(pieces) >= 2
    # <NL> counts as one token, like the newline it stands for
    assert g.count_tokens("答え\nです") == 3


def test_rinna_spec_with_style_from_the_tokenizer_and_stop_at_next_turn(tmp_path):
    path = save_wired_neox(tmp_path / "plain-folder", [X, NL, USER, ":", Y])
    assert detect_rinna_style(str(path)) is None  # no rinna name, no T5 tokenizer: hf: would not detect it
    g = from_spec(f"rinna:{path}#max_new_tokens=10")
    assert type(g) is RinnaGenerator and g.style is None
    msgs = [{"role": "user", "content": "質問"}]
    assert g.generate(msgs) == "答え"  # "答え<NL>ユーザー:です": cut where the model starts the user's turn
    assert g.style == "nl"  # the tokenizer has an <NL> piece
    assert "".join(g.stream(msgs)) == "答え"
    # the bilingual format has no <NL>: the same output is neither converted nor cut
    b = from_spec(f"rinna:{path}#style=bilingual,max_new_tokens=10")
    assert b.languages == frozenset({"ja", "en"})
    assert b.build_prompt(msgs) == "ユーザー: 質問\nシステム: "
    assert b.generate(msgs) == "答え<NL>ユーザー:です"


def test_rinna_options():
    assert from_spec("rinna:rinna/bilingual-gpt-neox-4b-instruction-ppo").style == "bilingual"
    card = from_spec("rinna:rinna/bilingual-gpt-neox-4b-instruction-ppo#sampling=card")
    assert card._sampling({}) == {"do_sample": True, "temperature": 1.0, "top_p": 0.85}
    ppo = from_spec("rinna:rinna/japanese-gpt-neox-3.6b-instruction-ppo#sampling=card")
    assert ppo._sampling({}) == {"do_sample": True, "temperature": 0.7, "repetition_penalty": 1.1}
    greedy = from_spec("rinna:rinna/japanese-gpt-neox-3.6b-instruction-ppo")
    assert greedy._sampling({}) == {"do_sample": False, "temperature": None, "top_p": None, "top_k": None,
                                    "repetition_penalty": 1.1}
    with pytest.raises(PdfqaError, match="unknown style"):
        from_spec("rinna:x/y#style=chatml")
    with pytest.raises(PdfqaError, match="unknown sampling"):
        from_spec("rinna:x/y#sampling=beam")


# ------------------------------------------------------------------------------------------ llama.cpp error paths
def test_llamacpp_missing_file(tmp_path):
    from pdfqa.generators.llamacpp import LlamaCppGenerator
    from pdfqa.generators.llamacpp import from_spec as llama_from_spec

    g = llama_from_spec(f"llamacpp:{tmp_path / 'absent.gguf'}#n_ctx=2048,n_threads=2")
    assert isinstance(g, LlamaCppGenerator) and g.n_ctx == 2048 and g.n_threads == 2 and g.context_window == 2048
    with pytest.raises(PdfqaError, match="no such GGUF file: .*absent.gguf"):
        g.generate([{"role": "user", "content": "hi"}])


def test_llamacpp_missing_package(tmp_path, monkeypatch):
    from pdfqa.generators.llamacpp import from_spec as llama_from_spec

    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if not installed, whatever the machine has
    with pytest.raises(PdfqaError, match=r"needs llama-cpp-python.*pip install 'pdfqa\[llamacpp\]'"):
        llama_from_spec(f"llamacpp:{model}").warm_up()


def test_llamacpp_spec_errors():
    from pdfqa.generators.llamacpp import parse_spec as llama_parse

    assert llama_parse("llamacpp:/m/x.gguf#n_gpu_layers=-1,temperature=0.2") == (
        "/m/x.gguf", {"n_gpu_layers": -1, "temperature": 0.2})
    with pytest.raises(PdfqaError, match="unknown option 'gpu=1'"):
        llama_parse("llamacpp:/m/x.gguf#gpu=1")
    with pytest.raises(PdfqaError, match="not a llama.cpp generator spec"):
        llama_parse("llamacpp:")
