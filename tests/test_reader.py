"""The header reader agrees with gguf.GGUFReader and reads only the header."""

from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest
from ggufpack import llama_header

from gpusplit.gguf import GGUFError, read_gguf, read_model
from gpusplit.gguf.reader import ArrayInfo, FileSource, Limits, parse_source
from gpusplit.gguf.types import GGML_TYPES


def _write(path, tensors, kvs=(), arch="llama", split_max_tensors=0):
    w = gguf.GGUFWriter(str(path), arch, split_max_tensors=split_max_tensors)
    w.add_block_count(2)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_context_length(512)
    for key, value in kvs:
        if isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif isinstance(value, list):
            w.add_array(key, value)
        else:
            w.add_uint64(key, value)
    for name, array, raw_dtype in tensors:
        if raw_dtype is None:
            w.add_tensor(name, array)
        else:
            w.add_tensor(name, array, raw_shape=array.shape, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _mixed_tensors():
    rng = np.random.default_rng(0)
    q8 = gguf.quants.quantize(rng.standard_normal((16, 64), dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
    return [
        ("token_embd.weight", rng.standard_normal((40, 64), dtype=np.float32), None),
        ("blk.0.attn_q.weight", rng.standard_normal((64, 64)).astype(np.float16), None),
        ("blk.0.ffn_up.weight", q8, gguf.GGMLQuantizationType.Q8_0),
        ("blk.1.attn_norm.weight", np.ones(64, dtype=np.float32), None),
        ("blk.1.ffn_gate_exps.weight", rng.standard_normal((2, 8, 64)).astype(np.float16), None),
        ("output.weight", rng.standard_normal((40, 64)).astype(np.float16), None),
    ]


def _compare_with_gguf_reader(path):
    ours = read_gguf(path)
    theirs = gguf.GGUFReader(str(path))
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    for mine, ref in zip(ours.tensors, theirs.tensors):
        assert list(mine.shape) == [int(d) for d in ref.shape]
        assert mine.ggml_type.id == int(ref.tensor_type)
        assert mine.data_offset == ref.data_offset
        assert mine.n_bytes == ref.n_bytes
        assert mine.n_elements == ref.n_elements
    for field in theirs.fields.values():
        if field.name.startswith("GGUF."):
            continue
        value = ours.metadata[field.name]
        expected = field.contents()
        if isinstance(value, ArrayInfo):
            assert value.count == len(expected)
        elif isinstance(value, tuple):
            assert list(value) == pytest.approx(expected) if isinstance(expected[0], float) else list(value) == expected
        elif isinstance(value, float):
            assert value == pytest.approx(expected)
        else:
            assert value == expected
    return ours


def test_agrees_with_gguf_reader_on_mixed_types(tmp_path):
    path = tmp_path / "mixed.gguf"
    _write(
        path,
        _mixed_tensors(),
        kvs=[
            ("general.name", "mixed ünïcode"),
            ("x.float", 0.25),
            ("x.layers", [1, 2, 3]),
            ("x.words", ["a", "bb"]),
            ("tokenizer.ggml.tokens", [f"tok{i}" for i in range(5000)]),
            ("tokenizer.ggml.scores", [float(i) for i in range(5000)]),
        ],
    )
    ours = _compare_with_gguf_reader(path)
    assert ours.version == 3
    assert ours.complete
    # Small arrays are read, big ones counted and skipped.
    assert ours.metadata["x.layers"] == (1, 2, 3)
    assert ours.metadata["x.words"] == ("a", "bb")
    assert isinstance(ours.metadata["tokenizer.ggml.tokens"], ArrayInfo)
    assert ours.metadata["tokenizer.ggml.tokens"].count == 5000
    assert isinstance(ours.metadata["tokenizer.ggml.scores"], ArrayInfo)
    assert ours.value_types["tokenizer.ggml.scores"] == "array[f32]"


def test_gguf_version_2_reads_like_version_3(tmp_path):
    p = llama_header()
    v3 = tmp_path / "v3.gguf"
    v3.write_bytes(p.build())
    p.version = 2
    v2 = tmp_path / "v2.gguf"
    v2.write_bytes(p.build())
    a, b = read_gguf(v3), read_gguf(v2)
    assert b.version == 2
    assert a.metadata == b.metadata
    assert [(t.name, t.shape, t.n_bytes, t.data_offset) for t in a.tensors] == [
        (t.name, t.shape, t.n_bytes, t.data_offset) for t in b.tensors
    ]
    _compare_with_gguf_reader(v2)


def test_reads_only_the_header(tmp_path):
    path = tmp_path / "big.gguf"
    p = llama_header(n_embd=1024)
    path.write_bytes(p.build())
    size = path.stat().st_size
    with FileSource(path) as source:
        f = parse_source(source, Limits())
        read = source.bytes_read
    assert f.shards[0].header_bytes < 10_000 < size
    assert read < 2 * 256 * 1024 < size  # one first chunk, never the 10 MB of weights


def test_split_model_merges_shards(tmp_path):
    path = tmp_path / "sp.gguf"
    _write(path, _mixed_tensors(), split_max_tensors=2)
    first = tmp_path / "sp-00001-of-00003.gguf"
    merged = read_gguf(first)
    assert len(merged.shards) == 3
    assert [t.name for t in merged.tensors] == [t[0] for t in _mixed_tensors()]
    assert [t.shard for t in merged.tensors] == [0, 0, 1, 1, 2, 2]
    # Each tensor's offset agrees with gguf's own reader of its shard.
    for no, shard_path in enumerate(sorted(tmp_path.glob("sp-*.gguf"))):
        theirs = {t.name: t for t in gguf.GGUFReader(str(shard_path)).tensors}
        for t in merged.tensors:
            if t.shard == no:
                assert t.data_offset == theirs[t.name].data_offset
    model = read_model(first)
    assert model.n_shards == 3
    assert model.total_bytes == sum(t.n_bytes for t in merged.tensors)


def test_split_model_refusals(tmp_path):
    path = tmp_path / "sp.gguf"
    _write(path, _mixed_tensors(), split_max_tensors=2)
    second = tmp_path / "sp-00002-of-00003.gguf"
    with pytest.raises(GGUFError, match="give the first shard, sp-00001-of-00003.gguf"):
        read_gguf(second)
    second.rename(tmp_path / "elsewhere.gguf")
    with pytest.raises(GGUFError, match="shard 2 of 3 is missing") as info:
        read_gguf(tmp_path / "sp-00001-of-00003.gguf")
    assert info.value.path.endswith("sp-00002-of-00003.gguf")
    # A first shard renamed so that its siblings cannot be found.
    (tmp_path / "sp-00001-of-00003.gguf").rename(tmp_path / "renamed.gguf")
    with pytest.raises(GGUFError, match="siblings cannot be found") as info:
        read_gguf(tmp_path / "renamed.gguf")
    assert info.value.field == "split.count"


def test_split_shard_with_wrong_number_is_refused(tmp_path):
    path = tmp_path / "sp.gguf"
    _write(path, _mixed_tensors(), split_max_tensors=2)
    # Swap shards 2 and 3: shard files whose split.no disagrees with their names.
    a, b = tmp_path / "sp-00002-of-00003.gguf", tmp_path / "sp-00003-of-00003.gguf"
    a.rename(tmp_path / "tmp")
    b.rename(a)
    (tmp_path / "tmp").rename(b)
    with pytest.raises(GGUFError) as info:
        read_gguf(tmp_path / "sp-00001-of-00003.gguf")
    assert info.value.field == "split.no"
    assert "expected 1" in info.value.reason


def test_type_table_matches_gguf_except_where_ggml_differs():
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        ours = GGML_TYPES[int(qtype)]
        if ours.name == "Q8_1":
            # ggml's block_q8_1 is two halves + 32 int8 = 36 bytes; gguf 0.19.0 says 40.
            assert (ours.block_size, ours.type_size) == (32, 36)
            assert size == 40
            continue
        assert (ours.block_size, ours.type_size) == (block, size), ours.name
    # gguf 0.19.0 does not know Q2_0 (id 42): 64 elements, a half scale + 16 bytes of 2-bit values.
    assert 42 not in {int(q) for q in gguf.GGML_QUANT_SIZES}
    assert (GGML_TYPES[42].name, GGML_TYPES[42].block_size, GGML_TYPES[42].type_size) == ("Q2_0", 64, 2 + 64 // 4)
    # Every id below llama.cpp 0.3.36's GGML_TYPE_COUNT (43) is either known or removed.
    from gpusplit.gguf.types import REMOVED_TYPE_IDS

    assert set(GGML_TYPES) | REMOVED_TYPE_IDS == set(range(43))


def test_per_layer_arrays_and_defaults(tmp_path):
    p = llama_header(n_layer=3, n_head=4, n_head_kv=2)
    from ggufpack import ARRAY, I32, U32, kv

    p.kvs = [e for e in p.kvs if b"head_count_kv" not in e]
    p.kvs.append(kv("llama.attention.head_count_kv", ARRAY, (I32, [2, 1, 0])))
    p.kvs.append(kv("llama.attention.key_length", U32, 32))
    p.kvs = [e for e in p.kvs if b"block_count" not in e] + [kv("llama.block_count", U32, 3)]
    path = tmp_path / "layers.gguf"
    path.write_bytes(p.build())
    model = read_model(path)
    assert model.n_head_kv == (2, 1, 0)
    assert model.head_dim_k == 32
    assert model.head_dim_v == 64 // 4  # value_length defaults to n_embd / n_head
    assert model.n_layer == 3
    assert len(model.blocks) == 3


def test_groups_and_totals(tmp_path):
    p = llama_header(n_layer=2)
    path = tmp_path / "m.gguf"
    path.write_bytes(p.build())
    model = read_model(path)
    assert [t.name for t in model.input.tensors] == ["token_embd.weight"]
    assert [t.name for t in model.output.tensors] == ["output_norm.weight", "output.weight"]
    assert [len(b.tensors) for b in model.blocks] == [5, 5]
    n_embd, kv_dim = 64, 64 // 4 * 2
    block_bytes = n_embd * 4 + n_embd * n_embd * 2 + 2 * n_embd * kv_dim * 2 + (n_embd * 2 * n_embd) // 32 * 34
    assert model.blocks[0].n_bytes == block_bytes
    assert model.total_bytes == n_embd * 32 * 4 + 2 * block_bytes + n_embd * 4 + n_embd * 32 * 2
    # Bytes per type, largest first.
    assert list(model.blocks[0].type_mix.items()) == [("F16", 16384), ("Q8_0", 8704), ("F32", 256)]
    assert model.n_vocab == 32
    assert model.context_length == 256


def test_sliding_window_pattern_follows_llama_cpp(tmp_path):
    from ggufpack import STRING, U32, kv

    p = llama_header(n_layer=12)
    p.kvs = [e for e in p.kvs if b"general.architecture" not in e and not e[8:].startswith(b"llama.")]
    p.kvs.insert(0, kv("general.architecture", STRING, "gemma3"))
    for key, value in (
        ("block_count", 12),
        ("embedding_length", 64),
        ("attention.head_count", 4),
        ("attention.head_count_kv", 2),
        ("attention.sliding_window", 512),
    ):
        p.kvs.append(kv(f"gemma3.{key}", U32, value))
    p.tensors = [t for t in p.tensors if not t[0].startswith("blk.")]
    path = tmp_path / "g.gguf"
    path.write_bytes(p.build())
    model = read_model(path)
    # gemma3: every sixth layer (5, 11) is global, the rest use the window.
    assert [il for il, swa in enumerate(model.swa_layers) if not swa] == [5, 11]
    assert model.sliding_window == 512


def test_float_metadata_is_exact(tmp_path):
    from ggufpack import F32, kv

    p = llama_header()
    p.kvs.append(kv("llama.rope.freq_base", F32, 500000.0))
    path = tmp_path / "m.gguf"
    path.write_bytes(p.build())
    assert read_gguf(path).metadata["llama.rope.freq_base"] == struct.unpack("<f", struct.pack("<f", 500000.0))[0]
