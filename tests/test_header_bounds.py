"""A GGUF header's cost in memory is bounded by its bytes (issue 35), and the sizes and counts the
planner divides or multiplies by are checked where the file is read: zero or negative ones are one
GGUFError naming the field (exit 2), never an internal error or a plan of negative bytes."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import pytest
from ggufpack import ARRAY, F32, I32, STRING, U32, Packed, kv, llama_header, s, tensor_info

from gpusplit.gguf import ArrayInfo, GGUFError, read_gguf, read_model
from gpusplit.gguf.reader import FileSource, Limits, parse_source

MB = 1_000_000
# What reading may hold beyond twice the header: the read-ahead window (16 MiB at most), the
# small arrays read (262,144 elements at most) and the interpreter's own allocations.
SLACK = 48 * 2**20


def _without_tokens(p: Packed) -> Packed:
    p.kvs = [e for e in p.kvs if not e.startswith(s("tokenizer.ggml.tokens"))]
    return p


def _one_tensor(name: str, shape: tuple[int, ...]) -> bytes:
    """A valid one-layer llama header followed by one hand-made tensor info (any shape)."""
    p = llama_header(n_layer=1)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, len(p.kvs))
    return head + b"".join(p.kvs) + tensor_info(name, shape, 0, 0) + b"\0" * 4096


def _big_arrays(numeric_bytes: int, string_bytes: int) -> Packed:
    """A valid llama header that also holds a big f32 array and a big array of short strings."""
    p = llama_header()
    p.with_data = False
    n_floats = numeric_bytes // 4
    p.kvs.append(s("tokenizer.ggml.scores") + struct.pack("<IIQ", ARRAY, F32, n_floats) + b"\0" * (4 * n_floats))
    merge = s("ab cd")
    n_merges = string_bytes // len(merge)
    p.kvs.append(s("tokenizer.ggml.merges") + struct.pack("<IIQ", ARRAY, STRING, n_merges) + merge * n_merges)
    return p


def _peak_while_reading(path: Path) -> tuple[int, int]:
    """(peak bytes Python allocated while `read_model` read `path`, the header's bytes)."""
    tracemalloc.start()
    try:
        model = read_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, model.header_bytes


# --- values checked at the reader ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape", "field"),
    [
        ("blk.0.attn_q.weight", (0, 64), "'blk.0.attn_q.weight'.ne[0]"),
        ("token_embd.weight", (64, 0), "'token_embd.weight'.ne[1]"),
        ("output.weight", (64, 32, 0), "'output.weight'.ne[2]"),
    ],
)
def test_a_zero_dimension_is_refused_where_the_tensor_is_read(tmp_path, name, shape, field):
    path = tmp_path / "zero.gguf"
    path.write_bytes(_one_tensor(name, shape))
    with pytest.raises(GGUFError) as info:
        read_gguf(path)
    assert info.value.field.endswith(field)
    assert "dimension is 0" in info.value.reason
    # the offset is that of the dimension: its 8 bytes there hold 0
    data = path.read_bytes()
    assert info.value.offset is not None
    assert data[info.value.offset : info.value.offset + 8] == b"\0" * 8


@pytest.mark.parametrize("command", ["plan", "inspect"])
def test_a_zero_dimension_exits_2_in_one_line(tmp_path, cli, command):
    path = tmp_path / "zero.gguf"
    # a matrix whose rows were divided by ne[0] in the predictor
    path.write_bytes(_one_tensor("blk.0.attn_q.weight", (0, 64)))
    args = ("plan", str(path), "--gpu", "24GiB") if command == "plan" else ("inspect", str(path))
    result = cli(*args)
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "'blk.0.attn_q.weight'.ne[0]" in lines[0]
    assert "internal error" not in lines[0]


@pytest.mark.parametrize(
    ("vocab", "reason"),
    [((I32, -5), "is negative"), ((U32, 0), "is 0")],
    ids=["negative", "zero"],
)
@pytest.mark.parametrize("command", ["plan", "inspect"])
def test_a_vocab_size_below_one_exits_2_naming_the_key(tmp_path, cli, command, vocab, reason):
    # without tokenizer.ggml.tokens the vocabulary's size is <arch>.vocab_size
    p = _without_tokens(llama_header())
    p.kvs.append(kv("llama.vocab_size", *vocab))
    path = tmp_path / "vocab.gguf"
    path.write_bytes(p.build())
    with pytest.raises(GGUFError) as info:
        read_model(path)
    assert info.value.field == "llama.vocab_size"
    assert reason in info.value.reason
    args = ("plan", str(path), "--gpu", "24GiB") if command == "plan" else ("inspect", str(path))
    result = cli(*args)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "llama.vocab_size" in lines[0]
    assert "internal error" not in lines[0]


def test_an_empty_token_list_is_refused(tmp_path):
    p = _without_tokens(llama_header())
    p.kvs.append(kv("tokenizer.ggml.tokens", ARRAY, (STRING, [])))
    path = tmp_path / "empty.gguf"
    path.write_bytes(p.build())
    with pytest.raises(GGUFError) as info:
        read_model(path)
    assert info.value.field == "tokenizer.ggml.tokens"
    assert "is empty" in info.value.reason


def test_a_positive_vocab_size_is_the_vocabulary_without_tokens(tmp_path):
    p = _without_tokens(llama_header())
    p.kvs.append(kv("llama.vocab_size", U32, 77))
    path = tmp_path / "vocab.gguf"
    path.write_bytes(p.build())
    assert read_model(path).n_vocab == 77


# --- memory -------------------------------------------------------------------------------------


def test_big_arrays_cost_less_than_twice_the_header(tmp_path):
    path = tmp_path / "big.gguf"
    path.write_bytes(_big_arrays(20 * MB, 20 * MB).build())
    peak, header = _peak_while_reading(path)
    assert header > 40 * MB
    assert peak < 2 * header + SLACK, f"{peak / MB:.1f} MB for a {header / MB:.1f} MB header"
    model = read_model(path)
    assert model.n_merges == 20 * MB // len(s("ab cd"))


def test_many_small_arrays_are_not_each_kept_as_python_objects(tmp_path):
    # 1,200 keys of 4,096 u32 each: small enough to be read one by one, ~36 bytes of Python
    # objects per 4-byte element if all were (~180 MB for this 20 MB header)
    p = llama_header()
    p.with_data = False
    values = struct.pack("<4096I", *range(100_000, 104_096))
    for i in range(1200):
        p.kvs.append(s(f"x.table.{i}") + struct.pack("<IIQ", ARRAY, U32, 4096) + values)
    path = tmp_path / "many.gguf"
    path.write_bytes(p.build())
    peak, header = _peak_while_reading(path)
    assert header > 19 * MB
    assert peak < 2 * header + SLACK, f"{peak / MB:.1f} MB for a {header / MB:.1f} MB header"
    f = read_gguf(path)
    # the first arrays are read, those past the budget counted
    assert f.metadata["x.table.0"] == tuple(range(100_000, 104_096))
    last = f.metadata["x.table.1199"]
    assert isinstance(last, ArrayInfo)
    assert last.count == 4096
    assert f.value_types["x.table.1199"] == "array[u32]"


def test_a_big_string_value_is_held_about_once(tmp_path):
    p = llama_header()
    p.with_data = False
    p.kvs.append(kv("tokenizer.chat_template", STRING, "x" * (30 * MB)))
    path = tmp_path / "template.gguf"
    path.write_bytes(p.build())
    peak, header = _peak_while_reading(path)
    assert peak < 2 * header + SLACK, f"{peak / MB:.1f} MB for a {header / MB:.1f} MB header"
    assert read_model(path).chat_template_chars == 30 * MB


def test_a_skipped_big_array_is_not_read_from_the_file(tmp_path):
    path = tmp_path / "big.gguf"
    path.write_bytes(_big_arrays(8 * MB, 0).build())
    with FileSource(path) as source:
        f = parse_source(source)
        read = source.bytes_read
    assert isinstance(f.metadata["tokenizer.ggml.scores"], ArrayInfo)
    assert f.header_bytes > 8 * MB
    assert read < 2 * MB  # the keys around the array and the tensor infos, not its 8 MB


def test_the_element_budget_counts_every_array_read(tmp_path):
    p = llama_header()
    p.kvs[2:2] = [kv("x.a", ARRAY, (U32, [1, 2, 3])), kv("x.b", ARRAY, (STRING, ["p", "q"])), kv("x.c", ARRAY, (U32, [4]))]
    path = tmp_path / "m.gguf"
    path.write_bytes(p.build())
    f = read_gguf(path, Limits(max_read_elements=5))
    assert f.metadata["x.a"] == (1, 2, 3)
    assert f.metadata["x.b"] == ("p", "q")
    assert isinstance(f.metadata["x.c"], ArrayInfo)
    assert f.value_types["x.c"] == "array[u32]"


def test_a_per_layer_array_left_unread_by_the_budget_names_why(tmp_path):
    p = llama_header(n_layer=2)
    p.kvs = [e for e in p.kvs if not e.startswith(s("llama.attention.head_count_kv"))]
    p.kvs.insert(2, kv("x.filler", ARRAY, (U32, [0] * 10)))
    p.add("llama.attention.head_count_kv", ARRAY, (U32, [2, 2]))
    path = tmp_path / "m.gguf"
    path.write_bytes(p.build())
    assert read_model(path).n_head_kv == (2, 2)
    with pytest.raises(GGUFError) as info:
        read_model(path, Limits(max_read_elements=10))
    assert info.value.field == "llama.attention.head_count_kv"
    assert "not read" in info.value.reason
