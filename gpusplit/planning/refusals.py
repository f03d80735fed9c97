"""What llama.cpp 0.3.36 refuses to load, found at plan time: pure functions, no I/O.

Each rule is one of llama.cpp's own checks at model load or context creation (the file and the
condition are named on each), with llama.cpp's words for the reason and gpusplit's fix. A plan
that breaks one is an input error (exit 2) before anything is loaded, instead of the engine's
"could not create the context" after the load. Silent adjustments (n_ctx padding, n_batch
clamping) are modelled in `memory.Settings`, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..base.errors import InputError
from ..gguf.types import type_by_name

if TYPE_CHECKING:
    from ..gguf.adapter import AdapterInfo
    from ..gguf.model import ModelInfo
    from .memory import Placement, Settings

MAX_SEQUENCES = 256  # LLAMA_MAX_SEQ
MAX_DEVICES = 16  # LLAMA_MAX_DEVICES: llama-cpp-python's tensor_split array

# llama.cpp 0.3.36's llm_arch_supports_sm_tensor (src/llama-arch.cpp): no tensor parallelism.
TENSOR_UNSUPPORTED = frozenset(
    [
        "grok",
        "mpt",
        "plamo2",
        "minicpm3",
        "gemma3n",
        "mamba",
        "mamba2",
        "jamba",
        "falcon-h1",
        "olmo2",
        "olmoe",
        "deepseek2",
        "deepseek32",
        "hy_v4",
        "dots3note",
        "glm-dsa",
        "bitnet",
        "t5",
        "nemotron_h",
        "nemotron_h_moe",
        "granitehybrid",
        "minimax-01",
        "minimax-m2",
        "minimax-m3",
        "mistral4",
        "kimi-linear",
        "bailingmoe3",
        "kimi-k3",
        "glm5-next",
        "qwen3tts",
        "qwen4exp",
    ]
)


# llama.cpp 0.3.36's LLM_ARCH_NAMES (src/llama-arch.cpp), less "clip" (the quantizer's dummy).
LLAMA_ARCHITECTURES = frozenset(
    [
        "llama",
        "llama4",
        "deci",
        "falcon",
        "grok",
        "gpt2",
        "gptj",
        "gptneox",
        "mpt",
        "baichuan",
        "starcoder",
        "refact",
        "bert",
        "modern-bert",
        "nomic-bert",
        "nomic-bert-moe",
        "neo-bert",
        "jina-bert-v2",
        "jina-bert-v3",
        "eurobert",
        "bloom",
        "stablelm",
        "qwen",
        "qwen2",
        "qwen2moe",
        "qwen2vl",
        "qwen3",
        "qwen3moe",
        "qwen3next",
        "qwen3vl",
        "qwen3vlmoe",
        "qwen35",
        "qwen35moe",
        "qwen4exp",
        "phi2",
        "phi3",
        "phimoe",
        "plamo",
        "plamo2",
        "plamo3",
        "codeshell",
        "orion",
        "internlm2",
        "minicpm",
        "minicpm3",
        "gemma",
        "gemma2",
        "gemma3",
        "gemma3n",
        "gemma4",
        "gemma4-assistant",
        "gemma-embedding",
        "starcoder2",
        "mamba",
        "mamba2",
        "maple",
        "jamba",
        "falcon-h1",
        "xverse",
        "command-r",
        "cohere2",
        "cohere2moe",
        "dbrx",
        "olmo",
        "olmo2",
        "olmoe",
        "muse-glimmer",
        "openelm",
        "arctic",
        "deepseek",
        "deepseek2",
        "deepseek2-ocr",
        "deepseek32",
        "deepseek4",
        "chatglm",
        "glm4",
        "glm4moe",
        "glm-dsa",
        "bitnet",
        "t5",
        "t5encoder",
        "jais",
        "jais2",
        "nemotron",
        "nemotron_h",
        "nemotron_h_moe",
        "exaone",
        "exaone4",
        "exaone-moe",
        "rwkv6",
        "rwkv6qwen2",
        "rwkv7",
        "arwkv7",
        "granite",
        "granitemoe",
        "granitehybrid",
        "graniteswitch",
        "granite_swa",
        "chameleon",
        "wavtokenizer-dec",
        "plm",
        "bailingmoe",
        "bailingmoe2",
        "bailingmoe3",
        "dots1",
        "dots3note",
        "arcee",
        "afmoe",
        "laguna",
        "ernie4_5",
        "ernie4_5-moe",
        "hunyuan-moe",
        "hunyuan-dense",
        "hunyuan_vl",
        "hy_v3",
        "hy_v4",
        "smollm3",
        "gpt-oss",
        "lfm2",
        "lfm2moe",
        "dream",
        "smallthinker",
        "llada",
        "llada-moe",
        "seed_oss",
        "grovemoe",
        "apertus",
        "minimax-01",
        "hrm_text",
        "minimax-m2",
        "minimax-m3",
        "cogvlm",
        "rnd1",
        "pangu-embedded",
        "mistral3",
        "eagle3",
        "dflash",
        "mistral4",
        "paddleocr",
        "mimo2",
        "step35",
        "spark2_5",
        "llama-embed",
        "maincoder",
        "kimi-linear",
        "kimi-k3",
        "glm5-next",
        "talkie",
        "mellum",
        "nanbeige",
        "qwen3tts",
        "pockettts",
    ]
)


@dataclass(frozen=True)
class Refusal:
    rule: str  # a short name, stable for tests and scripts
    reason: str  # what llama.cpp says (its own log line, where it has one)
    fix: str


@dataclass(frozen=True)
class Setup:
    """What the rules look at: the model, the context settings, the placement, the devices."""

    model: ModelInfo
    settings: Settings
    placement: Placement
    n_devices: int
    adapters: tuple[AdapterInfo, ...] = ()


def _quantized(name: str) -> bool:
    return type_by_name(name).is_quantized


def _quantized_v_without_fa(s: Setup) -> Refusal | None:
    # llama-context.cpp, llama_init_from_model: ggml_is_quantized(type_v) and flash attention off.
    if _quantized(s.settings.type_v) and not s.settings.flash_attn:
        return Refusal(
            "quantized-v-needs-flash-attn",
            "quantized V cache requires flash_attn to be enabled",
            "add --flash-attn, or use --kv-type-v f16",
        )
    return None


def _block_divides(which: str) -> Callable[[Setup], Refusal | None]:
    # llama-context.cpp, llama_init_from_model: with flash attention, each layer's head size must be
    # a multiple of the quantized cache type's block (checked for K, then V).
    def rule(s: Setup) -> Refusal | None:
        type_name = s.settings.type_k if which == "K" else s.settings.type_v
        head = s.model.head_dim_k if which == "K" else s.model.head_dim_v
        block = type_by_name(type_name).block_size
        if not s.settings.flash_attn or block <= 1 or not head or head % block == 0:
            return None
        option = "--kv-type-k" if which == "K" else "--kv-type-v"
        return Refusal(
            f"{which.lower()}-cache-block",
            f"{which} cache type {type_name} with block size {block} does not divide n_embd_head_{which.lower()}={head}",
            f"use {option} f16 (or a cache type whose block size divides {head})",
        )

    return rule


def _mla_types_differ(s: Setup) -> Refusal | None:
    # llama-context.cpp, llama_init_from_model: MLA models keep one latent cache, so K and V types match.
    if s.model.is_mla and s.settings.type_k != s.settings.type_v:
        return Refusal(
            "mla-kv-types",
            f"model does not support different K ({s.settings.type_k}) and V ({s.settings.type_v}) cache types",
            f"give K and V the same type, e.g. --kv-type {s.settings.type_k}",
        )
    return None


def _too_many_sequences(s: Setup) -> Refusal | None:
    # llama-context.cpp, llama_context(): n_seq_max above LLAMA_MAX_SEQ throws.
    if s.settings.n_parallel > MAX_SEQUENCES:
        return Refusal(
            "too-many-sequences",
            f"n_seq_max must be <= {MAX_SEQUENCES}",
            f"use --parallel {MAX_SEQUENCES} or fewer",
        )
    return None


def _tensor_architecture(s: Setup) -> Refusal | None:
    # llama-model.cpp, llama_model_create: split mode TENSOR on an architecture without it throws.
    if s.placement.split_mode == "tensor" and s.model.architecture in TENSOR_UNSUPPORTED:
        return Refusal(
            "tensor-architecture",
            f"LLAMA_SPLIT_MODE_TENSOR not implemented for architecture '{s.model.architecture}'",
            "use --mode layer",
        )
    return None


def _unknown_architecture(s: Setup) -> Refusal | None:
    # llama-model.cpp, llama_model_create: an architecture name this llama.cpp does not know.
    if s.model.architecture not in LLAMA_ARCHITECTURES:
        return Refusal(
            "unknown-architecture",
            f"unknown model architecture: '{s.model.architecture}'",
            "llama.cpp 0.3.36 cannot load this file: check general.architecture, or use a newer llama-cpp-python",
        )
    return None


def _adapter_architecture(s: Setup) -> Refusal | None:
    # llama-adapter.cpp, llama_adapter_lora_init_impl: an adapter trained for another architecture.
    for adapter in s.adapters:
        if adapter.architecture != s.model.architecture:
            return Refusal(
                "lora-architecture",
                f"model arch and LoRA arch mismatch ({adapter.path} is for {adapter.architecture or 'no architecture'}, "
                f"the model is {s.model.architecture})",
                "use an adapter trained for this model",
            )
    return None


def _too_many_devices(s: Setup) -> Refusal | None:
    # llama-cpp-python's Llama(): a tensor_split longer than LLAMA_MAX_DEVICES raises.
    if s.n_devices > MAX_DEVICES:
        return Refusal(
            "too-many-devices",
            f"Attempt to split tensors that exceed maximum supported devices. Current LLAMA_MAX_DEVICES={MAX_DEVICES}",
            f"use at most {MAX_DEVICES} devices (fewer --rpc workers or --gpu entries)",
        )
    return None


def require_device_count(n_devices: int, where: str = "", parameter: str | None = None) -> None:
    """Refuse more devices than llama.cpp takes before any work is done for them (the rule
    `_too_many_devices` checks at the end of planning, for plans made without this). `where`: the
    file that lists them."""
    if n_devices <= MAX_DEVICES:
        return
    raise InputError(
        ("{p} {where}: " if where else "") + "{n:,} devices, but llama.cpp takes at most {limit} (LLAMA_MAX_DEVICES)",
        "keep at most {limit} of its devices"
        if where
        else "use at most {limit} devices (fewer {p.rpc} workers or {p.gpus} entries)",
        parameter=parameter,
        where=where,
        n=n_devices,
        limit=MAX_DEVICES,
    )


RULES: tuple[Callable[[Setup], Refusal | None], ...] = (
    _unknown_architecture,
    _too_many_devices,
    _tensor_architecture,
    _too_many_sequences,
    _mla_types_differ,
    _quantized_v_without_fa,
    _block_divides("K"),
    _block_divides("V"),
    _adapter_architecture,
)


def refusals(
    model: ModelInfo, settings: Settings, placement: Placement, n_devices: int, adapters: tuple[AdapterInfo, ...] = ()
) -> list[Refusal]:
    """Every llama.cpp check this load would fail, in the order llama.cpp makes them."""
    setup = Setup(model, settings, placement, n_devices, tuple(adapters))
    return [r for rule in RULES if (r := rule(setup)) is not None]
