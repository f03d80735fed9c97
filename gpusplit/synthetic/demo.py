"""The demo model: a small real GGUF generated on first use into the user cache folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEMO_MODEL = "dense-f16"
DEMO_SEED = 0


def cache_dir() -> Path:
    """gpusplit's cache folder: $GPUSPLIT_CACHE_DIR, else $XDG_CACHE_HOME/gpusplit, else ~/.cache/gpusplit."""
    env = os.environ.get("GPUSPLIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "gpusplit"
    return Path.home() / ".cache" / "gpusplit"


def demo_content_version() -> str:
    """A short hash of what determines the demo model's bytes (spec, seed, generator version)."""
    from gpusplit.synthetic.tiny import GENERATOR_VERSION, TINY_MODELS

    key = f"{GENERATOR_VERSION}|{DEMO_SEED}|{TINY_MODELS[DEMO_MODEL]!r}"
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def demo_model_path() -> Path:
    """Path of the demo model (TINY_MODELS["dense-f16"], ~7 MB), generating it on first use.

    Written atomically (a temporary file in the same folder, then os.replace), so concurrent first
    uses are safe and an interrupted one leaves no half file under the final name. Needs numpy and
    gguf, not llama_cpp.
    """
    path = cache_dir() / f"demo-{demo_content_version()}.gguf"
    if path.is_file():
        return path
    from gpusplit.synthetic.tiny import write_tiny_model

    return write_tiny_model(path, DEMO_MODEL, seed=DEMO_SEED)
