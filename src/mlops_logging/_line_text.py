"""A child's output line as the text of its record: decoded, cleaned of terminal control (ANSI sequences, carriage
returns), and whether that text still gives the line's bytes back (when not, the record keeps them in ``raw_b64``)."""

from __future__ import annotations

import re

__all__ = ["clean_line", "line_text"]

# CSI (ESC [ params intermediates final: colours, cursor moves, erase), OSC (ESC ] ... BEL or ST: titles, hyperlinks),
# charset designations (ESC ( B) and the other 2-byte ESC sequences. A lone ESC that starts none of them is kept.
_ANSI_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[()*+][0-9A-Za-z]"
    r"|\x1b[@-Z\\^_`a-z{|}~=>]"
)


def clean_line(text: str) -> str:
    """Remove ANSI sequences and trailing CRs; a CR left in the middle keeps only what follows it (the final redraw)."""
    if "\x1b" in text:
        text = _ANSI_RE.sub("", text)
    if "\r" in text:
        text = text.rstrip("\r")
        cut = text.rfind("\r")
        if cut >= 0:
            text = text[cut + 1 :]
    return text


def line_text(raw: bytes) -> tuple[str, bool]:
    """Cleaned text of one line, and whether it is lossy: the text does not give ``raw`` back (undecodable bytes,
    kept as lone surrogates until rendered, or bytes the cleaning removed). A lossy line's record has raw_b64."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return clean_line(raw.decode("utf-8", "surrogateescape")), True
    cleaned = clean_line(text)
    return cleaned, cleaned is not text and cleaned != text
