"""Models with the shapes and per-tensor types of published files (random weights), written by
gpusplit and quantized by llama.cpp's own quantizer: the speed predictions are checked on them."""

from __future__ import annotations

from collections import Counter

import pytest

from gpusplit.gguf import read_model
from gpusplit.synthetic.real_shaped import FTYPES, REAL_SHAPED, write_real_shaped

MIB = 1024 * 1024


def test_the_catalog_covers_the_published_quantizations():
    quants = {m.quant for m in REAL_SHAPED.values()}
    assert quants == set(FTYPES)  # Q4_K_M, Q4_0, Q4_1, Q8_0, IQ4_XS
    families = {m.spec.name.split("-")[0].rstrip("0123456789.") for m in REAL_SHAPED.values()}
    assert len(REAL_SHAPED) >= 8 and len(families) >= 5
    assert any(m.spec.n_expert for m in REAL_SHAPED.values()) and any(m.spec.tied for m in REAL_SHAPED.values())


@pytest.mark.engine
def test_smollm2_q4_1_is_the_published_file(tmp_path):
    """SmolLM2-135M-Instruct's published Q4_1: Q4_1 layers and the tied embeddings in Q8_0 (Q6_K does
    not fit rows of 576), 92.10 MiB of tensors, as llama.cpp maps the published file."""
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    from gpusplit.jobs.runner import quantize

    path = write_real_shaped(tmp_path, "smollm2-135m-Q4_1", quantize)
    model = read_model(path)
    types = Counter(t.ggml_type.name for g in model.groups for t in g.tensors)
    assert types == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert [(t.name, t.ggml_type.name) for t in model.input.tensors] == [("token_embd.weight", "Q8_0")]
    assert round(model.total_bytes / MIB, 2) == 92.10
    assert not any(t.name == "output.weight" for t in model.output.tensors)  # tied
    assert not (tmp_path / "smollm2-135m-F16.gguf").exists()  # the source goes once every quantization is written
