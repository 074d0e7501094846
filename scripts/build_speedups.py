#!/usr/bin/env python3
"""Build ``mlops_logging._speedups`` with extra compiler flags into a directory of its own (tests, sanitizers).

Usage: ``python scripts/build_speedups.py OUT_DIR [--cflags FLAGS] [--define NAME]... [--package]``

The build uses this Python's compiler and flags (``sysconfig``, as setuptools does) plus the given ones. With
``--package``, ``OUT_DIR/mlops_logging/`` also holds links to the package's other files, so ``PYTHONPATH=OUT_DIR``
imports the whole package with this build of the extension (``make test-sanitize`` runs the tests that way).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "mlops_logging"


def build(out: Path, *, cflags: Sequence[str] = (), defines: Sequence[str] = (), header: str | None = None,
          package: bool = False) -> Path:
    """Compile the extension into ``out`` (``out/mlops_logging`` with ``package``); return the module's path.

    ``header``: the text of ``_grammar.h`` to build with (default: the committed one).
    """
    work = out / "src"
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(PACKAGE / "_speedups.c", work / "_speedups.c")
    (work / "_grammar.h").write_text((PACKAGE / "_grammar.h").read_text() if header is None else header)
    target_dir = out / "mlops_logging" if package else out
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"_speedups{sysconfig.get_config_var('EXT_SUFFIX')}"
    command = [
        *shlex.split(sysconfig.get_config_var("CC") or "cc"),
        *shlex.split(sysconfig.get_config_var("CFLAGS") or ""),
        *shlex.split(sysconfig.get_config_var("CCSHARED") or "-fPIC"),
        *cflags,
        *(f"-D{name}" for name in defines),
        f"-I{sysconfig.get_paths()['include']}",
        "-shared",
        str(work / "_speedups.c"),
        "-o",
        str(target),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{result.stderr}")
    if package:
        for path in PACKAGE.iterdir():
            link = target_dir / path.name
            if path.suffix in (".py", ".json", ".pyi", ".typed", ".h") and not link.exists():
                link.symlink_to(path)
    return target


def load(path: Path) -> ModuleType:
    """The build at ``path`` as a module object of its own (``sys.modules`` keeps the installed extension)."""
    loader = importlib.machinery.ExtensionFileLoader("mlops_logging._speedups", str(path))
    spec = importlib.util.spec_from_file_location("mlops_logging._speedups", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cflags", default="", help="extra compiler flags, one string")
    parser.add_argument("--define", action="append", default=[], help="a macro to define (repeatable)")
    parser.add_argument("--package", action="store_true", help="also link the package's Python files there")
    args = parser.parse_args(argv)
    try:
        target = build(args.out, cflags=shlex.split(args.cflags), defines=args.define, package=args.package)
    except RuntimeError as exc:
        print(f"build_speedups: {exc}", file=sys.stderr)
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
