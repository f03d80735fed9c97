"""Strings from untrusted files (model metadata, results files) made safe to show: terminal escape
sequences removed whole, other controls (C0, DEL, C1, zero-width, bidi) dropped or marked. The
terminal output and the HTML report both show such strings, so both use these."""

from __future__ import annotations

import re

# Escape sequences go whole: CSI (ESC [ or 8-bit CSI), OSC / DCS / SOS / PM / APC strings up to
# their terminator (BEL or ST), and the two-byte ESC forms.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]"
)
# What is left: C0, DEL, C1, zero-width and bidi controls. Lines of text keep \n and \t.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_CONTROLS_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def sanitize(text: str, max_chars: int = 200) -> str:
    """One safe line: no escapes, every control shown as '?', at most max_chars."""
    text = _CONTROLS.sub("?", _ESCAPES.sub("", str(text)))
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def sanitize_text(text: str) -> str:
    """Safe text that keeps its lines and tabs (generated text, JSON strings)."""
    return _CONTROLS_IN_TEXT.sub("", _ESCAPES.sub("", str(text)))
