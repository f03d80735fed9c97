"""The ggml tensor type table of llama.cpp 0.3.36 (ggml/include/ggml.h, ggml/src/ggml.c).

Block sizes and bytes per block are ggml's own, checked against the `static_assert`s in
ggml-common.h. Two entries differ from `gguf.GGML_QUANT_SIZES` (gguf 0.19.0) on purpose:
Q8_1 is 36 bytes a block (two halves + 32 int8), not 40, and Q2_0 (id 42) is missing there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GGMLType:
    id: int
    name: str
    block_size: int  # elements per block
    type_size: int  # bytes per block

    @property
    def is_quantized(self) -> bool:
        return self.block_size > 1

    def row_bytes(self, n_elements: int) -> int:
        """Bytes of a row of n_elements (ggml_row_size); n_elements must be a block multiple."""
        return self.type_size * (n_elements // self.block_size)


_QK_K = 256

GGML_TYPES: dict[int, GGMLType] = {
    t.id: t
    for t in (
        GGMLType(0, "F32", 1, 4),
        GGMLType(1, "F16", 1, 2),
        GGMLType(2, "Q4_0", 32, 18),
        GGMLType(3, "Q4_1", 32, 20),
        GGMLType(6, "Q5_0", 32, 22),
        GGMLType(7, "Q5_1", 32, 24),
        GGMLType(8, "Q8_0", 32, 34),
        GGMLType(9, "Q8_1", 32, 36),
        GGMLType(10, "Q2_K", _QK_K, 84),
        GGMLType(11, "Q3_K", _QK_K, 110),
        GGMLType(12, "Q4_K", _QK_K, 144),
        GGMLType(13, "Q5_K", _QK_K, 176),
        GGMLType(14, "Q6_K", _QK_K, 210),
        GGMLType(15, "Q8_K", _QK_K, 292),
        GGMLType(16, "IQ2_XXS", _QK_K, 66),
        GGMLType(17, "IQ2_XS", _QK_K, 74),
        GGMLType(18, "IQ3_XXS", _QK_K, 98),
        GGMLType(19, "IQ1_S", _QK_K, 50),
        GGMLType(20, "IQ4_NL", 32, 18),
        GGMLType(21, "IQ3_S", _QK_K, 110),
        GGMLType(22, "IQ2_S", _QK_K, 82),
        GGMLType(23, "IQ4_XS", _QK_K, 136),
        GGMLType(24, "I8", 1, 1),
        GGMLType(25, "I16", 1, 2),
        GGMLType(26, "I32", 1, 4),
        GGMLType(27, "I64", 1, 8),
        GGMLType(28, "F64", 1, 8),
        GGMLType(29, "IQ1_M", _QK_K, 56),
        GGMLType(30, "BF16", 1, 2),
        GGMLType(34, "TQ1_0", _QK_K, 54),
        GGMLType(35, "TQ2_0", _QK_K, 66),
        GGMLType(39, "MXFP4", 32, 17),
        GGMLType(40, "NVFP4", 64, 36),
        GGMLType(41, "Q1_0", 128, 18),
        GGMLType(42, "Q2_0", 64, 18),
    )
}

# Ids llama.cpp once used and no longer loads (Q4_2, Q4_3, the repacked Q4_0_x_x and IQ4_NL_x_x).
REMOVED_TYPE_IDS = frozenset({4, 5, 31, 32, 33, 36, 37, 38})

GGML_TYPES_BY_NAME: dict[str, GGMLType] = {t.name: t for t in GGML_TYPES.values()}


def type_by_name(name: str) -> GGMLType:
    """The ggml type called `name` (case-insensitive: "q8_0", "F16")."""
    try:
        return GGML_TYPES_BY_NAME[name.upper()]
    except KeyError:
        known = ", ".join(sorted(n.lower() for n in GGML_TYPES_BY_NAME))
        raise ValueError(f"unknown ggml type {name!r} (known: {known})") from None


# llama.cpp's llama_ftype (include/llama.h), the value of `general.file_type`.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
    41: "Q2_0",
    1024: "GUESSED",
}
