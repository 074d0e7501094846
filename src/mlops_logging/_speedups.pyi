"""Type stub of the optional C extension (``_speedups.c``); ``mlops_logging._framer`` uses it when it was built."""

from _typeshed import ReadableBuffer

#: ``_levels.GRAMMAR_DIGEST`` of the grammar data ``_grammar.h`` was generated from.
GRAMMAR_DIGEST: str
#: How the escaper scans: ``"sse2"`` (16 bytes at a time, x86-64), ``"word"`` (8 bytes at a time, little-endian) or
#: ``"byte"`` (the portable scan).
SCAN: str
#: ``line_level`` of a line without a marker.
NO_MARKER: int
#: ``line_level`` of an indented or empty line.
CONTINUATION: int

def render_lines(
    body: ReadableBuffer,
    json: object,
    heads: tuple[bytes, ...],
    tail: ReadableBuffer,
    prev_level: int,
    max_line_bytes: int,
    pending: ReadableBuffer = b"",
    /,
) -> tuple[bytes, int, int] | None:
    """Render complete lines (``body`` ends with a newline): for each line ``heads[level]`` + escaped line + ``tail``.

    Levels index ``_level_map.LEVELS`` (``heads`` has one head per level); ``prev_level`` is inherited by a first
    indented or empty line; ``pending``: the start of the first line, held from an earlier read (as if ``body`` were
    ``pending + body``). ``(rendered, count, last_level)``, or None when the chunk needs the exact line-by-line path.
    """

def line_level(line: ReadableBuffer, /) -> int:
    """Level index of the structural marker at the start of ``line`` (no newline), CONTINUATION or NO_MARKER."""
