"""Tests of gpusplit.synthetic: generated tiny models, header-only files, the demo model."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from gpusplit.synthetic import (
    HEADER_ONLY_MODELS,
    SMALL_TINY_MODELS,
    TINY_MODELS,
    cache_dir,
    demo_model_path,
    header_only_data_size,
    header_only_tensor_plan,
    tensor_plan,
    tiny_model_size,
    write_header_only,
    write_tiny_model,
)
from gpusplit.synthetic.vocab import bytes_to_unicode, spm_vocab, tiny_bpe_vocab

ENGINE_REASON = "the 'llama' extra (llama-cpp-python) is not installed"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# A minimal struct walker over a GGUF header (independent of gguf.GGUFReader, which takes >10 s
# on a 128k-token vocabulary and cannot open a file whose tensor data is missing).
# ---------------------------------------------------------------------------------------------

_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_TYPE_NAMES = {0: "F32", 1: "F16", 8: "Q8_0", 6: "Q5_0", 7: "Q5_1", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 39: "MXFP4"}


class Header:
    def __init__(self, path: Path):
        data = path.read_bytes() if path.stat().st_size < 64 << 20 else _read_prefix(path)
        mv = memoryview(data)
        magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", mv, 0)
        assert magic == b"GGUF" and version == 3
        off = 24
        self.kv: dict[str, object] = {}
        self.array_counts: dict[str, int] = {}

        def string(off: int) -> tuple[str, int]:
            (n,) = struct.unpack_from("<Q", mv, off)
            return bytes(mv[off + 8 : off + 8 + n]).decode("utf-8"), off + 8 + n

        def value(vtype: int, off: int, keep: bool) -> tuple[object, int]:
            if vtype in _SCALAR:
                fmt = "<" + _SCALAR[vtype]
                return struct.unpack_from(fmt, mv, off)[0], off + struct.calcsize(fmt)
            if vtype == 8:
                return string(off)
            assert vtype == 9, vtype
            etype, count = struct.unpack_from("<IQ", mv, off)
            off += 12
            if etype in _SCALAR:
                size = struct.calcsize(_SCALAR[etype])
                vals = list(struct.unpack_from(f"<{count}{_SCALAR[etype]}", mv, off)) if keep else None
                return (count, vals), off + size * count
            assert etype == 8
            vals = [] if keep else None
            for _ in range(count):
                (n,) = struct.unpack_from("<Q", mv, off)
                if keep:
                    vals.append(bytes(mv[off + 8 : off + 8 + n]).decode("utf-8"))
                off += 8 + n
            return (count, vals), off

        for _ in range(n_kv):
            key, off = string(off)
            (vtype,) = struct.unpack_from("<I", mv, off)
            off += 4
            keep = not key.startswith("tokenizer.ggml.") or key.endswith(("_id", "model", "pre"))
            val, off = value(vtype, off, keep)
            if vtype == 9:
                self.array_counts[key] = val[0]
                self.kv[key] = val[1]
            else:
                self.kv[key] = val
        self.tensors: dict[str, tuple[tuple[int, ...], str, int]] = {}
        for _ in range(n_tensors):
            name, off = string(off)
            (nd,) = struct.unpack_from("<I", mv, off)
            ne = struct.unpack_from(f"<{nd}Q", mv, off + 4)
            ttype, toff = struct.unpack_from("<IQ", mv, off + 4 + 8 * nd)
            off += 4 + 8 * nd + 12
            assert name not in self.tensors
            self.tensors[name] = (tuple(reversed(ne)), _TYPE_NAMES[ttype], toff)
        self.n_tensors = n_tensors
        self.end_of_infos = off


def _read_prefix(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(64 << 20)


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    for name in SMALL_TINY_MODELS:
        write_tiny_model(d / f"{name}.gguf", name)
    return d


@pytest.fixture(scope="module")
def header_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("headers")
    for name in HEADER_ONLY_MODELS:
        if name != "llama-3.1-70b":
            write_header_only(d / f"{name}.gguf", name)
    return d


# ---------------------------------------------------------------------------------------------
# tiny models: structure
# ---------------------------------------------------------------------------------------------


def test_registry_names():
    for name in (
        "dense-f32",
        "dense-f16",
        "dense-q8_0",
        "tied-f16",
        "moe-f16",
        "moe-q8_0",
        "gemma3-f16",
        "qwen3-f16",
        "qwen3moe-f16",
        "dense-large-f16",
    ):
        assert name in TINY_MODELS
    assert "dense-large-f16" not in SMALL_TINY_MODELS
    for name, spec in TINY_MODELS.items():
        assert spec.name == name


@pytest.mark.parametrize("name", SMALL_TINY_MODELS)
def test_tiny_model_structure(tiny_dir, name):
    import gguf

    spec = TINY_MODELS[name]
    path = tiny_dir / f"{name}.gguf"
    r = gguf.GGUFReader(path)

    def kv(key):
        f = r.fields[key]
        return f.contents()

    arch = spec.arch
    assert kv("general.architecture") == arch
    assert kv("general.file_type") == {"f32": 0, "f16": 1, "q8_0": 7}[spec.dtype]
    assert kv("general.alignment") == 32
    assert kv("general.name").endswith(name)
    assert kv(f"{arch}.block_count") == spec.n_layer
    assert kv(f"{arch}.embedding_length") == spec.n_embd
    assert kv(f"{arch}.attention.head_count") == spec.n_head
    assert kv(f"{arch}.attention.head_count_kv") == spec.n_head_kv
    assert spec.n_head_kv < spec.n_head  # GQA everywhere
    assert len(kv("tokenizer.ggml.tokens")) == spec.n_vocab
    types = kv("tokenizer.ggml.token_type")
    assert len(types) == spec.n_vocab
    if spec.tokenizer == "gpt2":  # byte-level BPE: the 256 byte characters come first
        assert kv("tokenizer.ggml.model") == "gpt2"
        assert kv("tokenizer.ggml.tokens")[:256] == list(bytes_to_unicode())
        assert len(kv("tokenizer.ggml.merges")) > 0
    else:  # SentencePiece: the 256 byte tokens <0x00>..<0xFF>
        assert kv("tokenizer.ggml.model") == "llama"
        assert types.count(6) == 256
        assert len(kv("tokenizer.ggml.scores")) == spec.n_vocab
    if spec.is_moe:
        assert kv(f"{arch}.expert_count") == spec.n_expert
        assert kv(f"{arch}.expert_used_count") == spec.n_expert_used
    if arch == "gemma3":
        assert kv("gemma3.attention.sliding_window") == spec.sliding_window > 0

    tensors = {t.name: t for t in r.tensors}
    plan = tensor_plan(spec)
    assert list(tensors) == [t.name for t in plan]
    for t in plan:
        rt = tensors[t.name]
        assert tuple(int(x) for x in reversed(rt.shape)) == t.shape, t.name
        assert rt.tensor_type.name == t.ggml_type, t.name

    # independent expectations
    wt = spec.dtype.upper()
    hd = spec.hd
    assert ("output.weight" in tensors) == (not spec.tied)
    assert tensors["token_embd.weight"].tensor_type.name == wt
    assert tensors["output_norm.weight"].tensor_type.name == "F32"
    assert tensors["blk.0.attn_norm.weight"].tensor_type.name == "F32"
    assert tensors["blk.0.attn_q.weight"].tensor_type.name == wt
    assert tuple(reversed([int(x) for x in tensors["blk.0.attn_k.weight"].shape])) == (spec.n_head_kv * hd, spec.n_embd)
    assert f"blk.{spec.n_layer - 1}.ffn_norm.weight" in tensors
    assert f"blk.{spec.n_layer}.ffn_norm.weight" not in tensors
    if spec.is_moe:
        ff = spec.n_ff_exp or spec.n_ff
        down = tensors["blk.0.ffn_down_exps.weight"]
        assert tuple(int(x) for x in down.shape) == (ff, spec.n_embd, spec.n_expert)  # ggml order
        assert tensors["blk.0.ffn_gate_inp.weight"].tensor_type.name == "F32"
        assert "blk.0.ffn_gate.weight" not in tensors
    else:
        assert "blk.0.ffn_gate_inp.weight" not in tensors
    if arch in ("gemma3", "qwen3", "qwen3moe"):
        assert int(tensors["blk.0.attn_q_norm.weight"].shape[0]) == hd
    if arch == "gemma3":
        assert "blk.0.post_attention_norm.weight" in tensors and "blk.0.post_ffw_norm.weight" in tensors

    # the data section holds exactly the tensors
    assert path.stat().st_size == r.data_offset + tiny_model_size(spec)


def test_tiny_weights_values(tiny_dir):
    import gguf
    import numpy as np

    r = gguf.GGUFReader(tiny_dir / "dense-f32.gguf")
    tensors = {t.name: t for t in r.tensors}
    emb = np.asarray(tensors["token_embd.weight"].data)
    assert 0.018 < float(emb.std()) < 0.022
    assert abs(float(emb.mean())) < 0.001
    assert np.all(np.asarray(tensors["blk.0.attn_norm.weight"].data) == 1.0)


def test_tiny_sizes_are_small(tiny_dir):
    for name in SMALL_TINY_MODELS:
        size = (tiny_dir / f"{name}.gguf").stat().st_size
        assert 1_000_000 < size < 25_000_000, (name, size)
    assert 150e6 < tiny_model_size("dense-large-f16") < 210e6


def test_tiny_determinism(tmp_path, tiny_dir):
    for name in ("dense-q8_0", "qwen3moe-f16"):
        again = write_tiny_model(tmp_path / f"{name}.gguf", name)
        assert sha256(again) == sha256(tiny_dir / f"{name}.gguf")
    other = write_tiny_model(tmp_path / "seed1.gguf", "dense-q8_0", seed=1)
    assert sha256(other) != sha256(tiny_dir / "dense-q8_0.gguf")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_unknown_tiny_model(tmp_path):
    with pytest.raises(KeyError, match="unknown tiny model"):
        write_tiny_model(tmp_path / "x.gguf", "no-such-model")
    assert not list(tmp_path.iterdir())


def test_vocabularies():
    v = spm_vocab(400)
    assert len(v.tokens) == len(set(v.tokens)) == 400
    assert v.tokens[:3] == ["<unk>", "<s>", "</s>"] and v.token_types[:3] == [2, 3, 3]
    assert v.tokens[3] == "<0x00>" and v.tokens[258] == "<0xFF>"
    assert "\u2581the" in v.tokens
    b = tiny_bpe_vocab(600)
    assert len(b.tokens) == len(set(b.tokens)) == 600
    table = set(bytes_to_unicode())
    assert len(table) == 256
    for tok, ttype in zip(b.tokens, b.token_types):
        if ttype == 1:
            assert set(tok) <= table, tok
    # every merge joins two tokens into a token
    tokens = set(b.tokens)
    for m in b.merges:
        left, right = m.split(" ")
        assert left in tokens and right in tokens and left + right in tokens


# ---------------------------------------------------------------------------------------------
# header-only files
# ---------------------------------------------------------------------------------------------

# tensor counts of the published GGUF conversions
EXPECTED_TENSORS = {
    "llama-3.1-8b": 292,
    "llama-3.1-70b": 724,
    "mixtral-8x7b": 323,
    "gemma-3-27b": 808,
    "gemma-3-270m": 236,  # 18 blocks x 13 tensors, token_embd, output_norm (tied)
    "qwen3-30b-a3b": 579,
    "deepseek-v3": 1086,  # 1025 in the older conversions that kept attn_kv_b whole, + one k_b/v_b pair per block
    "gpt-oss-120b": 687,
    "qwen3-next-80b-a3b": 807,  # 12 attention blocks x 16 + 36 delta-net blocks x 17 + 3
    "llama-4-scout": 627,
    "smollm2-135m": 272,  # 30 blocks x 9, token_embd, output_norm (tied)
    "smollm2-360m": 290,
    "qwen2.5-0.5b": 290,  # 24 blocks x 12 (q/k/v biases), tied
    "qwen2.5-1.5b": 338,
    "llama-3.2-1b": 147,  # 16 x 9, rope_freqs, token_embd, output_norm (tied)
    "gemma-3-1b": 340,
    "tinyllama-1.1b": 201,  # 22 x 9, token_embd, output_norm, output
    "phi-3-mini": 195,  # 32 x 6 (attn_qkv, ffn_up with the gate), token_embd, output_norm, output
}
EXPECTED_VOCAB = {  # (tokens, merges)
    "llama-3.1-8b": (128256, 280147),
    "llama-3.1-70b": (128256, 280147),
    "mixtral-8x7b": (32000, 0),
    "gemma-3-27b": (262144, 0),
    "gemma-3-270m": (262144, 0),
    "qwen3-30b-a3b": (151936, 151387),
    "deepseek-v3": (129280, 127741),
    "gpt-oss-120b": (201088, 446189),
    "qwen3-next-80b-a3b": (151936, 151387),
    "llama-4-scout": (202048, 439802),
    "smollm2-135m": (49152, 48900),
    "smollm2-360m": (49152, 48900),
    "qwen2.5-0.5b": (151936, 151387),
    "qwen2.5-1.5b": (151936, 151387),
    "llama-3.2-1b": (128256, 280147),
    "gemma-3-1b": (262144, 0),
    "tinyllama-1.1b": (32000, 0),
    "phi-3-mini": (32064, 0),
}
# approximate sizes of published Q4_K_M files (bartowski / ggml-org / Qwen), bytes
PUBLISHED_Q4_K_M = {
    "llama-3.1-8b": 4.92e9,
    "llama-3.1-70b": 42.52e9,
    "gemma-3-27b": 16.5e9,
    "qwen3-30b-a3b": 18.6e9,
    "deepseek-v3": 404.4e9,  # unsloth's Q4_K_M
    "gpt-oss-120b": 63.4e9,  # ggml-org's MXFP4
    "qwen3-next-80b-a3b": 48.5e9,  # unsloth's Q4_K_M
    "llama-4-scout": 65.4e9,  # unsloth's Q4_K_M
}


def _check_header(path: Path, name: str) -> Header:
    spec = HEADER_ONLY_MODELS[name]
    h = Header(path)
    assert h.n_tensors == EXPECTED_TENSORS[name] == len(header_only_tensor_plan(name))
    n_tokens, n_merges = EXPECTED_VOCAB[name]
    assert h.array_counts["tokenizer.ggml.tokens"] == n_tokens
    assert h.array_counts["tokenizer.ggml.token_type"] == n_tokens
    assert h.array_counts.get("tokenizer.ggml.merges", 0) == n_merges
    if spec.tokenizer in ("mistral", "gemma3"):
        assert h.kv["tokenizer.ggml.model"] == "llama"
        assert h.array_counts["tokenizer.ggml.scores"] == n_tokens
    else:
        assert h.kv["tokenizer.ggml.model"] == "gpt2"
    a = spec.arch
    assert h.kv["general.architecture"] == a
    assert h.kv["general.file_type"] == (38 if a == "gpt-oss" else 15)  # MXFP4_MOE, else Q4_K_M
    assert h.kv[f"{a}.block_count"] == spec.n_layer
    assert h.kv[f"{a}.embedding_length"] == spec.n_embd
    assert h.kv[f"{a}.attention.head_count_kv"] == spec.n_head_kv
    assert h.kv[f"{a}.context_length"] == spec.n_ctx_train
    # the file ends right after the tensor infos
    assert path.stat().st_size == h.end_of_infos
    # offsets are aligned, increasing, and the last tensor ends at the data size
    plan = header_only_tensor_plan(name)
    offsets = [h.tensors[t.name][2] for t in plan]
    assert offsets == sorted(offsets) and all(o % 32 == 0 for o in offsets)
    for t in plan:
        shape, ttype, _ = h.tensors[t.name]
        assert shape == t.shape and ttype == t.ggml_type
    assert path.stat().st_size < header_only_data_size(name)
    return h


@pytest.mark.parametrize("name", [n for n in HEADER_ONLY_MODELS if n != "llama-3.1-70b"])
def test_header_only(header_dir, name):
    _check_header(header_dir / f"{name}.gguf", name)


def test_header_only_70b(tmp_path):
    # a few seconds at most: GGUFWriter packs the 128k tokens and 280k merges in under a second
    import time

    t = time.perf_counter()
    path = write_header_only(tmp_path / "70b.gguf", "llama-3.1-70b")
    assert time.perf_counter() - t < 10
    h = _check_header(path, "llama-3.1-70b")
    assert h.kv["llama.attention.head_count"] == 64


def test_q4_k_m_types():
    def types(name):
        return {t.name: t.ggml_type for t in header_only_tensor_plan(name)}

    t8 = types("llama-3.1-8b")
    assert t8["token_embd.weight"] == "Q4_K" and t8["output.weight"] == "Q6_K"
    assert t8["rope_freqs.weight"] == "F32" and t8["blk.0.attn_norm.weight"] == "F32"
    v6 = [i for i in range(32) if t8[f"blk.{i}.attn_v.weight"] == "Q6_K"]
    assert v6 == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
    assert [i for i in range(32) if t8[f"blk.{i}.ffn_down.weight"] == "Q6_K"] == v6
    assert {t8[f"blk.{i}.attn_v.weight"] for i in range(32) if i not in v6} == {"Q4_K"}
    assert t8["blk.5.attn_q.weight"] == t8["blk.5.ffn_up.weight"] == "Q4_K"

    t70 = types("llama-3.1-70b")  # LLM_TYPE_70B: attn_v gets Q5_K where it would get Q4_K
    assert sorted({t70[f"blk.{i}.attn_v.weight"] for i in range(80)}) == ["Q5_K", "Q6_K"]

    tm = types("mixtral-8x7b")  # 8 experts: attn_k/attn_v Q8_0, attn_output Q5_K
    assert tm["blk.7.attn_v.weight"] == tm["blk.7.attn_k.weight"] == "Q8_0"
    assert tm["blk.7.attn_output.weight"] == "Q5_K"
    assert tm["blk.0.ffn_gate_inp.weight"] == "F32"
    assert tm["blk.0.ffn_down_exps.weight"] == "Q6_K" and tm["blk.4.ffn_down_exps.weight"] == "Q4_K"

    tg = types("gemma-3-27b")  # tied embeddings: token_embd is quantized like the output
    assert tg["token_embd.weight"] == "Q6_K" and "output.weight" not in tg

    tq = types("qwen3-30b-a3b")
    assert tq["blk.47.ffn_down_exps.weight"] == "Q6_K" and tq["blk.47.ffn_up_exps.weight"] == "Q4_K"


@pytest.mark.parametrize("name", sorted(PUBLISHED_Q4_K_M))
def test_header_only_sizes_match_published_files(name):
    assert header_only_data_size(name) == pytest.approx(PUBLISHED_Q4_K_M[name], rel=0.01)


def _check_sparse(path: Path, name: str) -> None:
    h = Header(path)
    data_start = -(-h.end_of_infos // 32) * 32
    st = path.stat()
    assert st.st_size == data_start + header_only_data_size(name)
    last = header_only_tensor_plan(name)[-1]
    assert st.st_size >= data_start + h.tensors[last.name][2]
    if hasattr(st, "st_blocks"):  # a hole, not gigabytes of zeros (on file systems with holes)
        assert st.st_blocks * 512 < 64 << 20


def test_header_only_sparse(tmp_path):
    path = write_header_only(tmp_path / "8b.gguf", "llama-3.1-8b", sparse=True)
    _check_sparse(path, "llama-3.1-8b")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in HEADER_ONLY_MODELS if n != "llama-3.1-8b"])
def test_header_only_sparse_large(tmp_path, name):
    path = write_header_only(tmp_path / f"{name}.gguf", name, sparse=True)
    _check_sparse(path, name)


def test_header_only_deterministic(tmp_path, header_dir):
    again = write_header_only(tmp_path / "m.gguf", "mixtral-8x7b")
    assert sha256(again) == sha256(header_dir / "mixtral-8x7b.gguf")


# ---------------------------------------------------------------------------------------------
# demo model
# ---------------------------------------------------------------------------------------------


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GPUSPLIT_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("GPUSPLIT_CACHE_DIR")
    assert cache_dir() == tmp_path / "x" / "gpusplit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "gpusplit"


def test_demo_model(monkeypatch, tmp_path, tiny_dir):
    monkeypatch.setenv("GPUSPLIT_CACHE_DIR", str(tmp_path / "cache"))
    p = demo_model_path()
    assert p.parent == tmp_path / "cache"
    assert p.name.startswith("demo-") and p.suffix == ".gguf"
    # dense-f16's shapes, types and sizes (its memory and speed figures are that model's); only its
    # vocabulary's pieces, embedding and output matrix differ (what makes it recite its sentence)
    from gpusplit.gguf.model import read_model

    demo, tiny = read_model(p), read_model(tiny_dir / "dense-f16.gguf")
    tensors = [[(t.name, t.shape, t.ggml_type, t.n_bytes) for t in m.input.tensors + m.output.tensors] +
               [(t.name, t.shape, t.ggml_type, t.n_bytes) for b in m.blocks for t in b.tensors] for m in (demo, tiny)]  # fmt: skip
    assert tensors[0] == tensors[1] and demo.n_vocab == tiny.n_vocab
    assert abs(p.stat().st_size - (tiny_dir / "dense-f16.gguf").stat().st_size) < 4096
    assert sha256(p) != sha256(tiny_dir / "dense-f16.gguf")
    mtime = p.stat().st_mtime_ns
    assert demo_model_path() == p
    assert p.stat().st_mtime_ns == mtime  # reused, not rewritten
    assert [q.name for q in p.parent.iterdir()] == [p.name]  # no temporary files left


@pytest.mark.engine
@pytest.mark.isolated
def test_the_demo_model_recites_its_sentence_whatever_the_prompt(monkeypatch, tmp_path):
    """README command 1 ends with the demo's text: greedy decoding says the one sentence it was built
    to say and then ends (its end-of-text token), after any prompt that does not itself end in one of
    the sentence's words (from which it would go on)."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    from gpusplit.synthetic.demo import DEMO_SENTENCE

    monkeypatch.setenv("GPUSPLIT_CACHE_DIR", str(tmp_path / "cache"))
    llm = llama_cpp.Llama(model_path=str(demo_model_path()), n_ctx=256, n_threads=2, verbose=False, seed=0)
    try:
        for prompt in (b"Once upon a time", b"Hello world", b""):
            tokens = llm.tokenize(prompt, add_bos=True)
            out: list[int] = []
            for token in llm.generate(tokens, temp=0.0):
                if token == llm.token_eos() or len(out) == 64:
                    break
                out.append(token)
            llm.reset()
            assert llm.detokenize(out).decode().strip() == DEMO_SENTENCE, prompt
    finally:
        llm.close()


# ---------------------------------------------------------------------------------------------
# the engine: llama-cpp-python loads and runs every tiny model
# ---------------------------------------------------------------------------------------------


def _generate(llama_cpp, path: Path, n: int = 8) -> tuple[list[int], bytes]:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False, seed=0)
    try:
        prompt = llm.tokenize(b"Hello world, the model", add_bos=True)
        out: list[int] = []
        for tok in llm.generate(prompt, temp=0.0):
            out.append(tok)
            if len(out) == n:
                break
        return out, llm.detokenize(out)
    finally:
        llm.close()


@pytest.mark.engine
@pytest.mark.isolated
@pytest.mark.parametrize("name", SMALL_TINY_MODELS)
def test_llama_cpp_runs_tiny_model(tiny_dir, name, plain_cpu_params):
    llama_cpp = pytest.importorskip("llama_cpp", reason=ENGINE_REASON)
    path = tiny_dir / f"{name}.gguf"
    toks1, text1 = _generate(llama_cpp, path)
    toks2, text2 = _generate(llama_cpp, path)
    assert len(toks1) == 8
    assert all(0 <= t < TINY_MODELS[name].n_vocab for t in toks1)
    assert (toks1, text1) == (toks2, text2)


@pytest.mark.engine
@pytest.mark.isolated
def test_llama_cpp_accepts_sparse_header_only(tmp_path):
    """llama.cpp's dry run (no_alloc) accepts a sparse header-only file and sees its real size."""
    llama_cpp = pytest.importorskip("llama_cpp", reason=ENGINE_REASON)
    sparse = write_header_only(tmp_path / "sparse.gguf", "qwen3-30b-a3b", sparse=True)
    short = write_header_only(tmp_path / "short.gguf", "qwen3-30b-a3b")

    def load(path):
        mp = llama_cpp.llama_model_default_params()
        mp.no_alloc = True
        mp.load_mode = 0
        mp.n_gpu_layers = 0
        return llama_cpp.llama_model_load_from_file(str(path).encode(), mp)

    model = load(sparse)
    assert model
    try:
        assert llama_cpp.llama_model_size(model) == header_only_data_size("qwen3-30b-a3b")
        assert llama_cpp.llama_model_n_layer(model) == 48
        assert llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model)) == 151936
    finally:
        llama_cpp.llama_model_free(model)
    assert not load(short)  # tensor data past the end of the file


@pytest.mark.slow
@pytest.mark.engine
@pytest.mark.isolated
def test_llama_cpp_runs_large_model(tmp_path, plain_cpu_params):
    llama_cpp = pytest.importorskip("llama_cpp", reason=ENGINE_REASON)
    path = write_tiny_model(tmp_path / "large.gguf", "dense-large-f16")
    assert 150e6 < path.stat().st_size < 210e6
    toks1, _ = _generate(llama_cpp, path)
    toks2, _ = _generate(llama_cpp, path)
    assert len(toks1) == 8 and toks1 == toks2


# ---------------------------------------------------------------------------------------------
# full-size models with random weights (benchmarks/gpu): valid blocks, finite small weights
# ---------------------------------------------------------------------------------------------


def _small(name: str, **shape):
    from dataclasses import replace

    return replace(HEADER_ONLY_MODELS[name], **shape)


SMALL_LLAMA = {"n_layer": 4, "n_embd": 512, "n_head": 4, "n_head_kv": 2, "n_ff": 1024}


def test_random_weights_decode_to_small_finite_values(tmp_path):
    import gguf
    import numpy as np

    from gpusplit.synthetic.header_only import write_random_weights

    spec = _small("llama-3.1-8b", **SMALL_LLAMA)
    path = write_random_weights(tmp_path / "m.gguf", spec)
    reader = gguf.GGUFReader(path)
    data_start = min(int(t.data_offset) for t in reader.tensors)
    assert path.stat().st_size == data_start + header_only_data_size(spec)
    seen = set()
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        assert np.isfinite(values).all(), t.name
        if t.name.endswith("norm.weight"):
            assert (values == 1).all(), t.name
            continue
        if len(t.shape) < 2:
            continue
        seen.add(t.tensor_type.name)
        assert 0.003 < float(values.std()) < 0.05, (t.name, t.tensor_type.name, values.std())
        assert float(np.abs(values).max()) < 0.2, t.name
    assert {"Q4_K", "Q6_K"} <= seen
    assert sha256(write_random_weights(tmp_path / "again.gguf", spec)) == sha256(path)  # deterministic


@pytest.mark.engine
@pytest.mark.isolated
def test_llama_cpp_runs_random_weights_model(tmp_path, plain_cpu_params):
    """The full-size writer's output runs in llama.cpp: finite logits that differ between tokens."""
    import numpy as np

    llama_cpp = pytest.importorskip("llama_cpp", reason=ENGINE_REASON)
    from gpusplit.synthetic.header_only import write_random_weights

    path = write_random_weights(tmp_path / "m.gguf", _small("llama-3.1-8b", **SMALL_LLAMA))
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=2, verbose=False, logits_all=True)
    try:
        llm.eval(llm.tokenize(b"Hello world, the model", add_bos=True))
        logits = np.asarray(llm.scores[: llm.n_tokens])
    finally:
        llm.close()
    assert np.isfinite(logits).all()
    assert float(logits.std()) > 0.01
    assert not np.allclose(logits[0], logits[-1])
