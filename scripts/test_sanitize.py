#!/usr/bin/env python3
"""``make test-sanitize``: the framer's C extension built with AddressSanitizer + UndefinedBehaviorSanitizer, then the
framer and speedups tests and a fuzz run against it; fails on any sanitizer report.

Usage: ``python scripts/test_sanitize.py [--iterations N] [--build-dir DIR]``

- The extension is built into ``build/sanitize/mlops_logging/`` (``scripts/build_speedups.py --package``) with
  ``-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1 -g``; ``PYTHONPATH`` puts that
  package first, so the tests import it (checked before they run).
- The Python interpreter is not instrumented, so the ASan runtime is preloaded (``LD_PRELOAD`` of the compiler's
  ``libasan.so``), and ``PYTHONMALLOC=malloc`` makes every Python object a malloc block with ASan's red zones around it
  (a read past the end of a ``bytes`` is caught). Leak checking is off (``detect_leaks=0``): CPython does not free
  everything at exit, which would bury a real report in noise.
- The fuzz (``scripts/fuzz_speedups.py``) also builds random grammars' C with the same flags.
- First a canary (a heap overflow compiled with the same flags) must be reported, so a broken setup cannot pass.
- Any report fails the run: ASan's are written under ``build/sanitize/reports/`` (also those of a child process a test
  started), UBSan's to the output, which is searched (``-fno-sanitize-recover=all`` also makes either abort).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import build_speedups  # noqa: E402

FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-O1", "-g"]
TESTS = ["tests/unit/test_lines.py", "tests/unit/test_speedups.py", "tests/unit/test_levels.py",
         "tests/unit/test_grammar.py"]
CANARY = """
#include <stdlib.h>
int heap_overflow(int n) { char *p = malloc(n); int v = p[n]; free(p); return v; }
int too_far(int n) { return 1 << n; }
"""
#: What a report of either sanitizer contains (UBSan writes to stderr: its log_path is not honoured next to ASan's).
MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def runtime() -> str:
    """The compiler's ASan runtime, to preload into the uninstrumented interpreter."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    found = subprocess.run([*cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not found or not Path(found).is_file():
        raise SystemExit("test-sanitize: the C compiler has no ASan runtime (libasan.so): on Debian/Ubuntu "
                         "`apt-get install gcc` brings libasan8 and libubsan1")
    return str(Path(found).resolve())


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``command`` from the repository root, stdout and stderr together (where UBSan's reports go)."""
    return subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def reports(directory: Path) -> list[Path]:
    return sorted(directory.glob("*")) if directory.exists() else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=100000, help="fuzz iterations (default: %(default)s)")
    parser.add_argument("--grammars", type=int, default=10, help="random grammars fuzzed (default: %(default)s)")
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build" / "sanitize")
    args = parser.parse_args(argv)
    build = args.build_dir
    shutil.rmtree(build, ignore_errors=True)
    report_dir = build / "reports"
    report_dir.mkdir(parents=True)
    target = build_speedups.build(build, cflags=FLAGS, package=True)
    print(f"test-sanitize: built {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}", flush=True)

    options = "halt_on_error=1:abort_on_error=1:print_stacktrace=1"
    env = {
        **os.environ,
        "LD_PRELOAD": runtime(),
        "ASAN_OPTIONS": f"{options}:detect_leaks=0:strict_string_checks=1:log_path={report_dir}/asan",
        "UBSAN_OPTIONS": f"{options}:log_path={report_dir}/ubsan",
        "PYTHONMALLOC": "malloc",
        "PYTHONPATH": os.pathsep.join([str(build), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    env.pop("MLOPS_LOG_SPEEDUPS", None)

    # The canaries: a heap overflow and an undefined shift built with the same flags must be reported, or this run
    # proves nothing.
    canary_so = build / "canary.so"
    (build / "canary.c").write_text(CANARY)
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    subprocess.run([*cc, *FLAGS, "-fPIC", "-shared", str(build / "canary.c"), "-o", str(canary_so)], check=True)
    for call, marker in (("heap_overflow(4)", "heap-buffer-overflow"), ("too_far(40)", "shift exponent")):
        canary = run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(canary_so)!r}).{call}"], env)
        text = canary.stdout + "".join(path.read_text(errors="replace") for path in reports(report_dir))
        if canary.returncode == 0 or marker not in text:
            print(f"test-sanitize: the canary {call} was not reported (exit {canary.returncode}): the sanitizers are "
                  f"not active\n{text[-2000:]}", file=sys.stderr)
            return 1
        for path in reports(report_dir):
            path.unlink()
    print("test-sanitize: both canaries (heap overflow, undefined shift) were reported: the sanitizers are active",
          flush=True)

    check = subprocess.run([sys.executable, "-c", "import mlops_logging._speedups as s; print(s.__file__)"], env=env,
                           capture_output=True, text=True)
    if check.returncode != 0 or Path(check.stdout.strip()).resolve() != target.resolve():
        print(f"test-sanitize: the tests would not import the sanitized build: {check.stdout}{check.stderr}",
              file=sys.stderr)
        return 1

    # pytest in a process that has imported the sanitized build first (and checked it is that one); -s: the reports
    # reach the output.
    pytest = (f"import sys, mlops_logging._speedups as s, pytest; assert s.__file__ == {str(target)!r}, s.__file__; "
              f"sys.exit(pytest.main(['-q', '-s', '-p', 'no:cacheprovider', *{TESTS!r}]))")
    steps = [
        [sys.executable, "-c", pytest],
        [sys.executable, str(ROOT / "scripts" / "fuzz_speedups.py"), "--iterations", str(args.iterations),
         "--grammars", str(args.grammars), "--cflags", " ".join(FLAGS), "--expect", str(target)],
    ]
    failed = False
    for step in steps:
        print(f"test-sanitize: {'pytest ' + ' '.join(TESTS) if step[1] == '-c' else ' '.join(step[1:])}", flush=True)
        result = run(step, env)
        print(result.stdout, end="", flush=True)
        failed = result.returncode != 0 or any(marker in result.stdout for marker in MARKERS) or failed
    found = reports(report_dir)
    for path in found:
        print(f"--- {path}\n{path.read_text(errors='replace')}", file=sys.stderr)
    if failed or found:
        print(f"test-sanitize: FAILED ({len(found)} sanitizer report(s))", file=sys.stderr)
        return 1
    print("test-sanitize: no sanitizer report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
