"""The demo model: a small real GGUF generated on first use into the user cache folder."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..base.paths import cache_dir
from .tiny import GENERATOR_VERSION, TINY_MODELS, tiny_vocab, write_tiny_model
from .vocab import NORMAL, SPM_SPACE, Vocab

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DEMO_MODEL = "dense-f16"
DEMO_SEED = 0


# What greedy decoding of the demo model says after a prompt (one that does not end in one of these
# words, from which it would go on): one sentence, each word a token of its own (a word used twice
# would need two successors), then the end-of-text token.
DEMO_SENTENCE = (
    "This is gpusplit's built-in demo model speaking: seven megabytes of generated weights, wired so greedy "
    "decoding recites one honest sentence and proves the whole path works."
)
EMBEDDING_SCALE = 16.0  # a token's embedding: one coordinate, large beside what the random blocks add


def demo_content_version() -> str:
    """A short hash of what determines the demo model's bytes (spec, seed, sentence, generator version)."""
    key = f"{GENERATOR_VERSION}|{DEMO_SEED}|{TINY_MODELS[DEMO_MODEL]!r}|{DEMO_SENTENCE}|{EMBEDDING_SCALE}"
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def demo_vocab() -> tuple[Vocab, list[int]]:
    """The demo's SentencePiece vocabulary with the sentence's words as pieces (in place of the
    last ones, the size unchanged), and the ids of those words in order."""
    vocab = tiny_vocab(TINY_MODELS[DEMO_MODEL])
    words = [SPM_SPACE + w for w in DEMO_SENTENCE.split()]
    if len(set(words)) != len(words):
        raise ValueError("the demo sentence repeats a word: greedy decoding could not recite it")
    ids = []
    spare = len(vocab.tokens) - 1
    for word in words:
        if word in vocab.tokens:
            ids.append(vocab.tokens.index(word))
            continue
        while vocab.tokens[spare] in words:
            spare -= 1
        vocab.tokens[spare] = word
        vocab.token_types[spare] = NORMAL
        ids.append(spare)
        spare -= 1
    return vocab, ids


def demo_tensors(ids: list[int], eos: int) -> dict[str, npt.NDArray[np.float32]]:
    """The embedding and output matrices that make greedy decoding recite the sentence: each word's
    embedding one coordinate of its own (every other token shares coordinate 0), and the output
    row of the word that follows it reading that coordinate; the last word is followed by the
    end-of-text token, any other token by the first word. The blocks keep their random weights:
    they run (and cost) as before, adding little beside the scaled embedding."""
    import numpy as np  # only when the demo model is written: gpusplit.api imports this package at start-up

    spec = TINY_MODELS[DEMO_MODEL]
    if len(ids) + 1 > spec.n_embd:
        raise ValueError("the demo sentence has more words than the model has coordinates")
    embedding = np.zeros((spec.n_vocab, spec.n_embd), dtype=np.float32)
    embedding[:, 0] = EMBEDDING_SCALE
    output = np.zeros((spec.n_vocab, spec.n_embd), dtype=np.float32)
    output[ids[0], 0] = 1.0
    for position, token in enumerate(ids, start=1):
        embedding[token] = 0.0
        embedding[token, position] = EMBEDDING_SCALE
        following = ids[position] if position < len(ids) else eos
        output[following, position] = 1.0
    return {"token_embd.weight": embedding, "output.weight": output}


def demo_model_path() -> Path:
    """Path of the demo model (TINY_MODELS["dense-f16"]'s shapes, ~7 MB; it recites DEMO_SENTENCE),
    generating it on first use.

    Written atomically (a temporary file in the same folder, then os.replace), so concurrent first
    uses are safe and an interrupted one leaves no half file under the final name. Needs numpy and
    gguf, not llama_cpp.
    """
    path = cache_dir() / f"demo-{demo_content_version()}.gguf"
    if path.is_file():
        return path
    vocab, ids = demo_vocab()
    return write_tiny_model(
        path,
        DEMO_MODEL,
        seed=DEMO_SEED,
        vocab=vocab,
        tensors=demo_tensors(ids, vocab.special_ids["eos"]),
        description="gpusplit's demo model: random blocks, and an embedding and output wired so that greedy decoding "
        "recites one sentence about itself; not a trained model",
    )
