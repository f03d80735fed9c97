"""Reading GGUF model files: knows nothing of devices or the CLI."""

from .errors import GGUFError
from .model import ModelInfo, TensorGroup, describe, read_model
from .reader import ArrayInfo, GGUFFile, Limits, TensorInfo, read_gguf
from .types import GGML_TYPES, GGMLType

__all__ = [
    "GGML_TYPES",
    "ArrayInfo",
    "GGMLType",
    "GGUFError",
    "GGUFFile",
    "Limits",
    "ModelInfo",
    "TensorGroup",
    "TensorInfo",
    "describe",
    "read_gguf",
    "read_model",
]
