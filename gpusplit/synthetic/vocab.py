"""Synthetic tokenizer vocabularies for generated GGUF files.

Two kinds, both in the layout llama.cpp's vocabulary loader accepts:

* SentencePiece-style (``tokenizer.ggml.model = "llama"``): special tokens, the 256 byte tokens
  ``<0x00>``..``<0xFF>`` (type BYTE, needed for byte fallback and the newline token), then ordinary
  pieces such as ``▁the`` with decreasing scores.
* GPT-2 byte-level BPE (``tokenizer.ggml.model = "gpt2"``): the 256 byte-level characters first
  (llama.cpp maps every character of a token through GPT-2's byte/unicode table when it decodes, so
  a token may only contain those characters), merged pieces, merges ``"a b"``, special tokens last.

The small vocabularies (a few hundred tokens) are for real, loadable models; the large ones have
the real token and merge *counts* of published models with made-up strings.

Nothing here imports numpy or gguf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gguf

# llama.cpp / gguf token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

SPM_SPACE = "\u2581"  # "▁"
BPE_SPACE = "\u0120"  # "Ġ" (byte 0x20 in GPT-2's byte/unicode table)

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "that",
    "for",
    "on",
    "it",
    "with",
    "as",
    "be",
    "by",
    "he",
    "at",
    "his",
    "from",
    "this",
    "are",
    "or",
    "an",
    "had",
    "not",
    "but",
    "which",
    "have",
    "they",
    "were",
    "one",
    "you",
    "all",
    "we",
    "her",
    "she",
    "there",
    "been",
    "their",
    "has",
    "would",
    "will",
    "more",
    "if",
    "no",
    "when",
    "what",
    "so",
    "out",
    "up",
    "into",
    "time",
    "can",
    "only",
    "other",
    "new",
    "some",
    "could",
    "these",
    "two",
    "may",
    "first",
    "then",
    "do",
    "any",
    "like",
    "my",
    "now",
    "over",
    "such",
    "our",
    "man",
    "me",
    "even",
    "most",
    "made",
    "after",
    "also",
    "did",
    "many",
    "before",
    "must",
    "through",
    "back",
    "years",
    "where",
    "much",
    "your",
    "way",
    "well",
    "down",
    "should",
    "because",
    "each",
    "just",
    "those",
    "people",
    "how",
    "too",
    "little",
    "state",
    "good",
    "very",
    "make",
    "world",
    "still",
    "own",
    "see",
    "men",
    "work",
    "long",
    "get",
    "here",
    "between",
    "both",
    "life",
    "being",
    "under",
    "never",
    "day",
    "same",
    "another",
    "know",
    "while",
    "last",
    "might",
    "us",
    "great",
    "old",
    "year",
    "off",
    "come",
    "since",
    "against",
    "go",
    "came",
    "right",
    "used",
    "take",
    "three",
    "model",
    "layer",
    "token",
    "split",
    "memory",
    "device",
    "graph",
    "cache",
    "tensor",
    "weight",
    "batch",
    "context",
    "hello",
    "water",
    "light",
    "house",
    "night",
    "small",
    "large",
    "number",
    "point",
    "part",
]


@dataclass
class Vocab:
    """A tokenizer vocabulary ready to be written to GGUF metadata."""

    model: str  # "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    pre: str | None
    tokens: list[str]
    token_types: list[int]
    scores: list[float] | None = None
    merges: list[str] | None = None
    special_ids: dict[str, int] = field(default_factory=dict)  # bos/eos/unk/pad -> id
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None

    def __len__(self) -> int:
        return len(self.tokens)


def _base26(n: int, width: int = 2) -> str:
    letters = []
    while True:
        n, r = divmod(n, 26)
        letters.append(chr(ord("a") + r))
        if n == 0 and len(letters) >= width:
            break
    return "".join(reversed(letters))


@lru_cache(maxsize=1)
def bytes_to_unicode() -> tuple[str, ...]:
    """GPT-2's byte -> printable character table, indexed by byte value."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return tuple(chr(table[b]) for b in range(256))


# --------------------------------------------------------------------------------------------
# SentencePiece-style ("llama") vocabularies
# --------------------------------------------------------------------------------------------


def _spm_pieces(count: int) -> list[str]:
    """`count` distinct ordinary pieces, common words first, made-up pieces after."""
    out: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> bool:
        if p not in seen:
            seen.add(p)
            out.append(p)
        return len(out) >= count

    if count <= 0:
        return out
    for w in _WORDS:
        if add(SPM_SPACE + w):
            return out
    for c in "abcdefghijklmnopqrstuvwxyz":
        if add(SPM_SPACE + c) or add(c):
            return out
    for c in "0123456789.,!?'-:;()\"":
        if add(c):
            return out
    if add(SPM_SPACE):
        return out
    for w in _WORDS:
        if add(w):
            return out
    for w in _WORDS:
        for i in range(2, len(w)):
            if add(w[:i]) or add(SPM_SPACE + w[:i]):
                return out
    i = 0
    while True:
        if add((SPM_SPACE if i % 2 == 0 else "") + _base26(i // 2, 3)):
            return out
        i += 1


def spm_vocab(
    n_vocab: int,
    *,
    style: str = "llama",
) -> Vocab:
    """A SentencePiece-style vocabulary of exactly `n_vocab` tokens.

    style "llama": ``<unk> <s> </s>`` (ids 0, 1, 2), bytes, pieces (Llama 2 / Mistral layout).
    style "gemma": ``<pad> <eos> <bos> <unk> <mask>``, turn markers, unused slots, bytes, pieces
    (Gemma 3 layout; bos 2, eos 1).
    """
    tokens: list[str] = []
    types: list[int] = []
    if style == "llama":
        tokens += ["<unk>", "<s>", "</s>"]
        types += [UNKNOWN, CONTROL, CONTROL]
        special = {"unk": 0, "bos": 1, "eos": 2}
        extra_specials: list[tuple[str, int]] = []
        add_space_prefix = None
    elif style == "gemma":
        tokens += ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
        types += [CONTROL, CONTROL, CONTROL, UNKNOWN, USER_DEFINED]
        special = {"pad": 0, "eos": 1, "bos": 2, "unk": 3}
        extra_specials = [("<start_of_turn>", CONTROL), ("<end_of_turn>", CONTROL)]
        add_space_prefix = False
    else:
        raise ValueError(f"unknown SentencePiece vocabulary style {style!r}")
    for t, ty in extra_specials:
        tokens.append(t)
        types.append(ty)
    if style == "gemma" and n_vocab >= 100_000:
        # real Gemma 3 keeps ~6,000 "<unusedN>" slots near the start
        for i in range(6_000):
            tokens.append(f"<unused{i}>")
            types.append(UNUSED)
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(BYTE)
    n_special = len(tokens)
    if n_vocab < n_special + 1:
        raise ValueError(f"n_vocab {n_vocab} is too small for a {style} vocabulary ({n_special}+ tokens)")
    pieces = _spm_pieces(n_vocab - n_special)
    tokens += pieces
    types += [NORMAL] * len(pieces)
    scores = [0.0] * n_special + [-float(i) for i in range(len(pieces))]
    return Vocab(
        model="llama",
        pre="default",
        tokens=tokens,
        token_types=types,
        scores=scores,
        special_ids=special,
        add_bos=True,
        add_eos=False,
        add_space_prefix=add_space_prefix,
    )


# --------------------------------------------------------------------------------------------
# GPT-2 byte-level BPE ("gpt2") vocabularies
# --------------------------------------------------------------------------------------------


def tiny_bpe_vocab(n_vocab: int, *, pre: str = "qwen2") -> Vocab:
    """A small but *working* byte-level BPE vocabulary of exactly `n_vocab` tokens.

    Every merged token is produced by a merge of two existing tokens, so llama.cpp's BPE
    tokenizer can reach it; any text falls back to the 256 byte-level tokens.
    Specials (Qwen layout): ``<|endoftext|>`` (bos/pad), ``<|im_start|>``, ``<|im_end|>`` (eos).
    """
    b2u = bytes_to_unicode()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    target = n_vocab - len(specials)
    if target < 256:
        raise ValueError(f"n_vocab {n_vocab} is too small for a byte-level BPE vocabulary (>= 259)")
    tokens = list(b2u)
    seen = set(tokens)
    merges: list[str] = []
    merge_seen: set[tuple[str, str]] = set()

    def merge(a: str, b: str) -> bool:
        """Record the merge a+b; return True once the vocabulary is full."""
        if len(tokens) >= target:
            return True
        if (a, b) not in merge_seen:
            merge_seen.add((a, b))
            merges.append(f"{a} {b}")
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
        return len(tokens) >= target

    def add_word(word: str) -> bool:
        chars = [b2u[c] for c in word.encode("utf-8")]
        cur = chars[0]
        for ch in chars[1:]:
            if merge(cur, ch):
                return True
            cur = cur + ch
        return False

    done = len(tokens) >= target
    for w in _WORDS:
        if done:
            break
        done = add_word(" " + w) or add_word(w)
    i = 0
    while not done:  # made-up pieces once the words are used up
        done = add_word(" " + _base26(i, 3))
        i += 1
    types = [NORMAL] * len(tokens) + [CONTROL] * len(specials)
    base = len(tokens)
    tokens += specials
    return Vocab(
        model="gpt2",
        pre=pre,
        tokens=tokens,
        token_types=types,
        merges=merges,
        special_ids={"bos": base, "pad": base, "eos": base + 2},
        add_bos=False,
    )


def large_bpe_vocab(
    n_vocab: int,
    n_merges: int,
    *,
    pre: str,
    n_normal: int,
    specials: list[tuple[str, int]],
    special_ids: dict[str, int],
    add_bos: bool,
    pad_type: int = UNUSED,
) -> Vocab:
    """A byte-level BPE vocabulary with real counts and synthetic strings.

    Layout: the 256 byte-level characters, made-up pieces up to `n_normal` tokens, `specials`
    (ids n_normal...), then ``[PAD<id>]`` slots up to `n_vocab` (as convert_hf_to_gguf.py pads a
    tokenizer to the model's vocab_size). Merges are distinct ``"a b"`` pairs of existing tokens.
    Every string uses only characters of GPT-2's byte table, so llama.cpp can decode each token.
    """
    b2u = bytes_to_unicode()
    if n_normal < 257 or n_normal + len(specials) > n_vocab:
        raise ValueError("inconsistent BPE vocabulary counts")
    made_up = [(BPE_SPACE if i % 2 == 0 else "") + _base26(i // 2, 2) for i in range(n_normal - 256)]
    tokens = list(b2u) + made_up
    types = [NORMAL] * n_normal
    for text, ttype in specials:
        tokens.append(text)
        types.append(ttype)
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]")
        types.append(pad_type)
    n = len(made_up)
    if n_merges > 256 * n:
        raise ValueError("too many merges for the made-up pieces")
    merges = [f"{made_up[i % n]} {b2u[i // n]}" for i in range(n_merges)]
    return Vocab(
        model="gpt2",
        pre=pre,
        tokens=tokens,
        token_types=types,
        merges=merges,
        special_ids=special_ids,
        add_bos=add_bos,
    )


def write_vocab(writer: gguf.GGUFWriter, vocab: Vocab) -> None:
    """Add the ``tokenizer.ggml.*`` keys for `vocab` to a GGUFWriter."""
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.token_types)
    if vocab.merges is not None:
        writer.add_token_merges(vocab.merges)
    ids = vocab.special_ids
    if "bos" in ids:
        writer.add_bos_token_id(ids["bos"])
    if "eos" in ids:
        writer.add_eos_token_id(ids["eos"])
    if "unk" in ids:
        writer.add_unk_token_id(ids["unk"])
    if "pad" in ids:
        writer.add_pad_token_id(ids["pad"])
    if vocab.add_bos is not None:
        writer.add_add_bos_token(vocab.add_bos)
    if vocab.add_eos is not None:
        writer.add_add_eos_token(vocab.add_eos)
    if vocab.add_space_prefix is not None:
        writer.add_bool("tokenizer.ggml.add_space_prefix", vocab.add_space_prefix)
