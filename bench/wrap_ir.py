"""Instructions logwrap's per-chunk path costs a MB of bench/wrap.py's stream, counted with valgrind: deterministic,
so two revisions (or the C and pure-Python framers) can be compared on a noisy machine where wall time cannot tell
5% apart.

    python bench/wrap_ir.py [--python OTHER_PYTHON ...] [--format json|text] [--pure] [--chunk BYTES]

The stream is bench/wrap.py's generator output (the same lines), cut into ``--chunk`` byte reads (default 256 KiB,
logwrap's read size). In-process, no child and no event loop: each chunk goes through what logwrap does with it
after ``os.read``: ``StreamFramer.feed`` then the log file's ``FileSink.submit`` and ``flush`` (one ``write()`` of
the chunk's records to a file in a temporary directory, with logwrap's file settings). The loop runs over N and 3N
MB of the stream under ``valgrind --tool=callgrind``; the difference of the totals over 2N MB is the count per MB
(imports and set-up cancel out). ``--pure``: the pure-Python fast path (``MLOPS_LOG_SPEEDUPS=0``).
Uses the framer and sink modules by name (private, but there since before #19): an install without them is skipped.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wrap import GENERATOR  # noqa: E402

LOOP = textwrap.dedent("""\
    import os, sys, tempfile, time
    from pathlib import Path
    from mlops_logging._framer import StreamFramer
    from mlops_logging._files import LogFile
    from mlops_logging._sink import FileSink
    try:  # as logwrap's process: freed chunk buffers stay in the heap, start-up objects out of the cyclic GC
        from mlops_logging.wrap._process import tune_malloc
        tune_malloc()
    except ImportError:
        pass
    import gc
    gc.freeze()
    stream_path, megabytes, chunk, fmt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    fd = os.open(stream_path, os.O_RDONLY)
    logdir = Path(tempfile.mkdtemp())
    logfile = LogFile(logdir / "bench.log", max_bytes=0, backups=0, check_interval=0.0, exclusive=True, mode=0o644)
    sink = FileSink(logfile, notice=lambda message, fields: b"", buffer_bytes=8 << 20)
    framer = StreamFramer(service="bench", stream="stdout", fmt=fmt, pid=1234)
    now = time.monotonic()
    left = megabytes << 20
    while left > 0:  # one os.read a chunk, as logwrap reads its child's pipe
        c = os.read(fd, min(chunk, left))
        left -= len(c)
        sink.submit(framer.feed(c, now))
        sink.flush(now)
    os.close(fd)
    sink.submit(framer.close(now))
    sink.flush(now, force=True)
    logfile.close()
    assert framer.exact_chunks <= 1, framer.paths  # the fast path ran (the first chunk may start mid-way)
    os.unlink(logdir / "bench.log")
    os.rmdir(logdir)
""")


def instructions(python: str, stream: Path, megabytes: int, chunk: int, fmt: str, pure: bool) -> int:
    """Total instructions (callgrind's ``Collected``) of one run of the loop."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "MLOPS_LOG_SPEEDUPS": "0" if pure else "1"}
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, "-c", LOOP,
                           str(stream), str(megabytes), str(chunk), fmt], capture_output=True, text=True, env=env)
    match = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"valgrind run failed:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", action="append", default=[], help="also count another install's python")
    parser.add_argument("--format", choices=("json", "text"), default="json")
    parser.add_argument("--pure", action="store_true", help="the pure-Python framer (MLOPS_LOG_SPEEDUPS=0)")
    parser.add_argument("--chunk", type=int, default=256 * 1024)
    parser.add_argument("--megabytes", type=int, default=4, help="N: the runs read N and 3N MB of the stream")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-wrap-ir-") as tmp:
        stream = Path(tmp) / "stream"
        gen = Path(tmp) / "gen.py"
        gen.write_text(GENERATOR)
        lines = 10_000 * ((3 * args.megabytes << 20) // (10_000 * 120) + 1)  # enough for 3N MB (lines are ~123 B)
        with stream.open("wb") as out:
            subprocess.run([sys.executable, str(gen), str(lines)], stdout=out, check=True)
        n = args.megabytes
        for python in [sys.executable, *args.python]:
            small = instructions(python, stream, n, args.chunk, args.format, args.pure)
            large = instructions(python, stream, 3 * n, args.chunk, args.format, args.pure)
            per_mb = (large - small) / (2 * n)
            path = "pure Python" if args.pure else "C"
            print(f"{python}: {args.format}, {path} framer, {args.chunk} B chunks: {per_mb / 1e6:,.1f} M instructions "
                  f"a MB ({per_mb / (1 << 20):.2f} a byte)")


if __name__ == "__main__":
    main()
