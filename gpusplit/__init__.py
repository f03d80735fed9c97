"""gpusplit: plan and run split inference of GGUF models across GPUs and machines."""

from __future__ import annotations

__version__ = "0.1.0"

from .gguf.errors import GGUFError
from .gguf.model import ModelInfo, read_model
from .gguf.reader import read_gguf

__all__ = ["GGUFError", "ModelInfo", "__version__", "read_gguf", "read_model"]
