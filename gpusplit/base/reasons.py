"""Reasons, warnings and notes as data: a stable code for programs, a text for people.

Programs (gpusplit's own code and tests among them) pick them by `code`; the wording is free to
change. Every JSON document carries them as {"code": ..., "text": ...}. CODES lists every code
and what it means (docs/json.md shows the table).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# code -> what it means (one line). A code, once published, keeps its meaning.
CODES: dict[str, str] = {
    # why a candidate is what it is (the first reason of each)
    "single-gpu": "the whole model on one GPU",
    "layer-split": "the layers split over the GPUs for even headroom after each one's compute buffer",
    "tensor-split": "every layer split across alike GPUs by rows (row split or tensor parallelism)",
    "expert-offload": "the experts of the first blocks on the CPU, the rest on the GPUs",
    "partial-offload": "the GPUs hold some layers, the CPU the rest",
    "cpu-only": "everything on the CPU",
    "no-gpu": "no GPU: everything on the CPU",
    "as-given": "the split, layers or expert offload evaluated exactly as given",
    # what the planner changed or could not do
    "row-as-tensor": "a row split runs as llama.cpp's tensor parallelism (the backends have no split buffers)",
    "tensor-kv-f16": "tensor parallelism needs an unquantized KV cache: it was set to f16",
    "tensor-flash-attn": "tensor parallelism needs flash attention: it was turned on",
    "does-not-fit": "nothing fits at this context size",
    "flash-attn-off": "flash attention is off on a CUDA device, where it is faster and smaller",
    # links to RPC workers
    "link-cost": "what the links to the RPC workers take of each token",
    "link-avoided": "the fastest plan over the links, and what they would have cost",
    # the host's weights
    "host-copies": "the host keeps copies of its weights in the CPU backend's extra buffer types (AMX, CPU_REPACK)",
    "no-repack": "--no-repack: the host keeps its weights in the mapped file only",
    "recovered": "llama.cpp crashed with the CPU's extra buffer types on; the work ran again without them",
    # companions and memory
    "draft-model": "the draft model's bytes beside the model",
    "projector": "the multimodal projector's place and bytes",
    "pipeline-parallel": "llama.cpp keeps several copies of each device's inputs (pipeline parallelism)",
    "user-floor": "tune --users: no configuration gave each user the --min-user-tps floor",
    "compute-sizing": "how the compute buffers were sized: llama.cpp's allocation (inventory), an upper bound, or a fit",
    # what llama_cpp.Llama() cannot take
    "python-n-cpu-moe": "llama_cpp.Llama() takes no --n-cpu-moe (gpusplit run applies it itself)",
    "python-no-repack": "llama_cpp.Llama() takes no --no-repack (gpusplit run applies it itself)",
    "python-draft": "llama_cpp.Llama() takes no draft model",
    # warnings about the plan
    "memory-approximate": "an architecture whose cache llama.cpp sizes by rules gpusplit does not model",
    "compute-estimated": "compute buffers estimated as for attention layers (recurrent or hybrid models)",
    "incomplete-file": "the model file's tensor data is missing or cut short",
    # where predicted speeds come from
    "speed-measured": "every device used was measured",
    "speed-catalog": "a device's figures come from its datasheet",
    "speed-assumed": "a device's figures are assumed",
    "sync-unmeasured": "tensor parallelism's synchronisation was not measured for this group",
    # the devices
    "hypothetical-devices": "the devices are hypothetical (--gpu)",
    "no-engine": "the llama.cpp engine is not installed: devices from NVML and RPC workers only",
    "no-cuda-backend": "NVML sees NVIDIA GPUs but the engine has no CUDA backend",
    "no-gpu-found": "no GPU found: llama.cpp will run on the CPU",
    "nvml": "something NVML or CUDA_VISIBLE_DEVICES said",
    "probe": "what a device probe found or could not measure",
    "run-failed": "a probe model's run failed: its weight class is left unmeasured",
    "link-unmeasured": "a worker's link rates could not be measured",
    "cache-warm": "a worker's weight cache held the probe's models before the probe",
    # measurements taken beside other work
    "contended": "a figure was measured while other processes or the hypervisor took CPU time it needed",
    "probe-contended": "the probe measured a device while other work took CPU time: its figures were not kept",
    "probe-remeasured": "probe models that other work disturbed were measured again, undisturbed",
    "probe-twin": "a worker on this machine computing as one probed already (its CPU, threads and build): "
    "that one's figures, its own link measured",
    # tune
    "prediction-only": "nothing can be measured: configurations ranked by prediction only",
    "within-noise": "the winner's lead is inside the spread of its measurements",
    # an older document's reason, which carried its text alone
    "unknown": "a reason read from a document written before reasons had codes",
}


@dataclass(frozen=True)
class Reason:
    """One reason, warning or note: `code` (from CODES) for programs, `text` for people, and for
    some codes the figures a program may want (`values`: JSON values, named by the code's maker)."""

    code: str
    text: str
    values: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown reason code {self.code!r}: add it to base/reasons.py's CODES")

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "text": self.text, **({"values": dict(self.values)} if self.values else {})}

    def __str__(self) -> str:
        return self.text


def codes(reasons: Iterable[Reason]) -> list[str]:
    """The codes of some reasons, in order."""
    return [r.code for r in reasons]
