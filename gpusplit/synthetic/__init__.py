"""Generated GGUF models, so that nothing is ever downloaded.

* tiny real models (random weights) that llama.cpp loads and runs: :data:`TINY_MODELS`,
  :func:`write_tiny_model`;
* header-only files with the real shapes and Q4_K_M types of published models:
  :data:`HEADER_ONLY_MODELS`, :func:`write_header_only`, and the same models complete, with random
  weights, for benchmarks on real hardware: :func:`write_random_weights`;
* the demo model, cached: :func:`demo_model_path`.

Importing this package is cheap: numpy and gguf are imported only when a file is written.
"""

from gpusplit.base.paths import cache_dir
from gpusplit.synthetic.demo import demo_model_path
from gpusplit.synthetic.header_only import (
    HEADER_ONLY_MODELS,
    HeaderOnlySpec,
    header_only_data_size,
    header_only_tensor_plan,
    write_header_only,
    write_random_weights,
)
from gpusplit.synthetic.tiny import (
    SMALL_TINY_MODELS,
    TINY_MODELS,
    TensorPlan,
    TinySpec,
    tensor_plan,
    tiny_model_size,
    write_tiny_lora,
    write_tiny_model,
    write_tiny_projector,
)

__all__ = [
    "HEADER_ONLY_MODELS",
    "SMALL_TINY_MODELS",
    "TINY_MODELS",
    "HeaderOnlySpec",
    "TensorPlan",
    "TinySpec",
    "cache_dir",
    "demo_model_path",
    "header_only_data_size",
    "header_only_tensor_plan",
    "tensor_plan",
    "tiny_model_size",
    "write_header_only",
    "write_random_weights",
    "write_tiny_lora",
    "write_tiny_model",
    "write_tiny_projector",
]
