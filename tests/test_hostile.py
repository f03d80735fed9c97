"""Every hostile class of gguf-facts.md: one GGUFError naming the field, and exit 2 in one line."""

from __future__ import annotations

import struct
import time
import tracemalloc

import pytest
from ggufpack import ARRAY, U8, llama_header, s
from hostile import CASES

from gpusplit.gguf import GGUFError, read_gguf, read_model
from gpusplit.gguf.reader import Limits

IDS = [c[0] for c in CASES]


@pytest.fixture(params=CASES, ids=IDS)
def hostile_file(request, tmp_path):
    name, build, field, reason = request.param
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(build())
    return path, field, reason


def test_hostile_file_raises_one_gguf_error_naming_the_field(hostile_file):
    path, field, reason = hostile_file
    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(GGUFError) as info:
        read_model(path)
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    err = info.value
    assert field in err.field, err.message
    assert reason in err.reason, err.message
    assert err.path == str(path)
    assert str(path) in str(err)
    # Bounded whatever the declared counts say: memory exactly, time only as a hang would show
    # (milliseconds here; tracemalloc and a busy runner can make it seconds).
    assert elapsed < 20.0
    assert peak < 32 * 1024 * 1024


def test_hostile_file_exits_2_with_one_line(hostile_file, cli):
    path, field, _ = hostile_file
    result = cli("inspect", str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gpusplit: error: ")
    assert field in lines[0]
    assert "Traceback" not in result.stderr


def test_offset_of_the_error_points_at_the_field(tmp_path):
    data = llama_header().build()
    at = data.index(b"llama.attention.head_count_kv")
    # Turn the head_count_kv u32 value into 99 (more KV heads than heads).
    value_at = at + len("llama.attention.head_count_kv") + 4
    data = data[:value_at] + struct.pack("<I", 99) + data[value_at + 4 :]
    path = tmp_path / "kv.gguf"
    path.write_bytes(data)
    with pytest.raises(GGUFError) as info:
        read_model(path)
    assert info.value.offset == value_at


def test_array_of_arrays_is_read_but_deeper_nesting_is_refused(tmp_path):
    ok = llama_header().add("x.nested", ARRAY, (ARRAY, [(U8, [1, 2]), (U8, [3])])).build()
    path = tmp_path / "nested.gguf"
    path.write_bytes(ok)
    f = read_gguf(path)
    assert f.metadata["x.nested"].count == 2
    assert f.value_types["x.nested"] == "array[array]"


def test_tensor_data_past_the_end_is_incomplete_not_an_error(tmp_path):
    p = llama_header()
    full = p.build()
    p.with_data = False
    header_only = p.build()
    path = tmp_path / "header-only.gguf"
    path.write_bytes(header_only)
    model = read_model(path)
    assert not model.complete
    # The missing bytes are exactly the data the header promises beyond the end of the file.
    assert model.missing_bytes == len(full) - len(header_only)
    full_path = tmp_path / "full.gguf"
    full_path.write_bytes(full)
    assert read_model(full_path).complete


def test_truncated_tensor_data_is_incomplete_by_the_missing_amount(tmp_path):
    full = llama_header().build()
    path = tmp_path / "cut.gguf"
    path.write_bytes(full[:-1000])
    model = read_model(path)
    assert model.missing_bytes == 1000


@pytest.mark.parametrize(
    ("limits", "field", "reason"),
    [
        (Limits(max_header_bytes=512), "tokenizer.ggml.tokens", "header larger than the 512 byte limit"),
        (Limits(max_kv=3), "kv_count", "exceed the 3 limit"),
        (Limits(max_tensors=5), "tensor_count", "exceed the 5 limit"),
        (Limits(max_string_bytes=5), "general.name", "exceeds the 5 byte limit"),
    ],
)
def test_limits_refuse_with_a_clear_message(tmp_path, limits, field, reason):
    path = tmp_path / "m.gguf"
    path.write_bytes(llama_header(n_vocab=200).build())
    with pytest.raises(GGUFError) as info:
        read_gguf(path, limits)
    assert field in info.value.field
    assert reason in info.value.reason


def test_limits_at_the_limit_pass(tmp_path):
    p = llama_header(n_vocab=200)
    path = tmp_path / "m.gguf"
    path.write_bytes(p.build())
    n_kv, n_tensors = len(p.kvs), len(p.tensors)
    f = read_gguf(path, Limits(max_kv=n_kv, max_tensors=n_tensors, max_string_bytes=len("packed")))
    assert len(f.tensors) == n_tensors


def test_a_directory_and_a_missing_file_are_input_errors(tmp_path, cli):
    for target, reason in ((tmp_path, "is a directory"), (tmp_path / "absent.gguf", "no such file")):
        result = cli("inspect", str(target))
        assert result.exit_code == 2
        assert reason in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_untrusted_strings_print_no_escape_sequences(tmp_path, cli):
    p = llama_header()
    p.kvs[1] = s("general.name") + struct.pack("<I", 8) + s("evil\x1b[31mred\x1b]0;title\x07\x9b2J\x07name")
    p.add("tokenizer.chat_template", 8, "{% for m in messages %}{{ m.content }}{% endfor %}\x1b[2J")
    path = tmp_path / "evil.gguf"
    path.write_bytes(p.build())
    for args in (("inspect", str(path)), ("inspect", "--json", str(path))):
        result = cli(*args)
        assert result.exit_code == 0
        assert "\x1b" not in result.stdout and "\x9b" not in result.stdout and "\x07" not in result.stdout
        # The template is a length, never rendered or printed.
        assert "messages" not in result.stdout
        assert "evil" in result.stdout and "red" in result.stdout
