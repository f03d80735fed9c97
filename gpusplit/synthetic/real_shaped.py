"""Models with the shapes, vocabularies, tied or untied outputs and per-tensor types of published
files, with random weights: what the speed predictions are checked on (benchmarks/prediction.py).

Each entry is a published model (HEADER_ONLY_MODELS: its config.json's shapes) in a quantization
people download. The model is written with F16 matrices and random weights, then quantized by
llama.cpp's own quantizer, so every tensor gets exactly the type llama.cpp gives it in the published
file: the Q5_0 / Q8_0 fallbacks for rows that are not a multiple of 256, Q6_K outputs, the tied
embeddings' type, the Q4_K_M mix's Q6_K layers. Nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from gpusplit.base.files import replacing
from gpusplit.synthetic.header_only import HEADER_ONLY_MODELS, HeaderOnlySpec, write_random_weights

# llama_ftype values (include/llama.h) of the quantizations below
FTYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K_M": 15, "IQ4_XS": 30}


@dataclass(frozen=True)
class RealShaped:
    label: str  # how the published file is usually called
    spec: HeaderOnlySpec
    quant: str  # a FTYPES key

    @property
    def file_name(self) -> str:
        return f"{self.spec.name}-{self.quant}.gguf"


def _cut(name: str, n_layer: int) -> HeaderOnlySpec:
    """A published MoE model with its first `n_layer` blocks only (every block is alike): its
    experts, router and vocabulary at a size this machine runs."""
    spec = HEADER_ONLY_MODELS[name]
    return replace(spec, name=f"{name}-{n_layer}l", display_name=f"{spec.display_name} ({n_layer} of {spec.n_layer} layers)",
                   n_layer=n_layer)  # fmt: skip


REAL_SHAPED: dict[str, RealShaped] = {
    m.file_name.removesuffix(".gguf"): m
    for m in (
        RealShaped("SmolLM2-135M-Instruct Q4_1", HEADER_ONLY_MODELS["smollm2-135m"], "Q4_1"),
        RealShaped("SmolLM2-360M-Instruct Q8_0", HEADER_ONLY_MODELS["smollm2-360m"], "Q8_0"),
        RealShaped("Qwen2.5-0.5B-Instruct Q4_K_M", HEADER_ONLY_MODELS["qwen2.5-0.5b"], "Q4_K_M"),
        RealShaped("Qwen2.5-1.5B-Instruct Q4_0", HEADER_ONLY_MODELS["qwen2.5-1.5b"], "Q4_0"),
        RealShaped("Llama-3.2-1B-Instruct Q4_K_M", HEADER_ONLY_MODELS["llama-3.2-1b"], "Q4_K_M"),
        RealShaped("Llama-3.2-1B-Instruct IQ4_XS", HEADER_ONLY_MODELS["llama-3.2-1b"], "IQ4_XS"),
        RealShaped("gemma-3-270m Q4_K_M", HEADER_ONLY_MODELS["gemma-3-270m"], "Q4_K_M"),
        RealShaped("gemma-3-1b-it Q4_0", HEADER_ONLY_MODELS["gemma-3-1b"], "Q4_0"),
        RealShaped("Qwen3-30B-A3B Q4_K_M, 4 of 48 layers", _cut("qwen3-30b-a3b", 4), "Q4_K_M"),
        RealShaped("TinyLlama-1.1B-Chat-v1.0 Q4_K_M", HEADER_ONLY_MODELS["tinyllama-1.1b"], "Q4_K_M"),
        RealShaped("Phi-3-mini-4k-instruct Q4_K_M", HEADER_ONLY_MODELS["phi-3-mini"], "Q4_K_M"),
    )
}


def write_real_shaped(
    folder: str | os.PathLike[str], name: str, quantize: Callable[[str, str, int], object], keep_source: bool = False
) -> Path:
    """The model `name` (a REAL_SHAPED key) in `folder`, written once: an F16 source with random
    weights, quantized by `quantize(src, dst, llama_ftype)` (llama.cpp's quantizer: runner.quantize)."""
    model = REAL_SHAPED[name]
    folder = Path(folder)
    path = folder / model.file_name
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{model.spec.name}-F16.gguf"
    if not source.is_file():
        write_random_weights(source, model.spec, f16=True)
    with replacing(path, "folder") as tmp:
        quantize(str(source), str(tmp), FTYPES[model.quant])
    if not keep_source and not any(
        m.spec.name == model.spec.name and not (folder / m.file_name).is_file() for m in REAL_SHAPED.values()
    ):
        source.unlink()  # every quantization of this model is written: the F16 source is not needed
    return path
