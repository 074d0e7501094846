"""What logwrap derives from the command it runs: the service name when none is given (its command line with the
secrets hidden is :func:`mlops_logging._redaction.redact_argv`)."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence

from .._redaction import ENV_ASSIGNMENT

__all__ = ["service_from_command"]

_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_PYTHON = re.compile(r"(?:python|pypy)(?:\d+(?:\.\d+)*)?[a-z]?")  #: python, python3, python3.11, python3.13t, pypy3
_PYTHON_VALUE_FLAGS = "WX"  #: python's one-letter options that take a value (-c and -m end the options)
_ENV_VALUE_FLAGS = ("-u", "--unset", "-C", "--chdir")  #: env's options that take a value
_LAUNCHERS = ("uv", "poetry", "pdm", "pipenv", "hatch", "rye")  #: `<launcher> run CMD ...` runs CMD


def _as_name(word: str) -> str:
    name = _NOT_NAME.sub("_", word)
    return re.sub(r"\.{2,}", ".", name).lstrip("._")[:128]


def _python_target(args: Sequence[str]) -> str | None:
    """What ``python ARGS`` runs, as a name: ``-m pkg.mod`` -> ``pkg``, ``path/train.py`` -> ``train``; None for
    ``-c CODE``, ``-`` (stdin) and a bare interpreter. Options before ``-m`` are skipped as python parses them."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--check-hash-based-pycs":
            i += 2
            continue
        if arg == "--":
            return _python_target([args[i + 1]]) if i + 1 < len(args) and not args[i + 1].startswith("-") else None
        if arg.startswith("--"):
            i += 1
            continue
        if arg == "-" or not arg.startswith("-"):
            return None if arg == "-" else os.path.basename(arg).removesuffix(".py")
        skip = 1
        for j, flag in enumerate(arg[1:], 1):
            if flag in "cm" or flag in _PYTHON_VALUE_FLAGS:
                value = arg[j + 1:] or (args[i + 1] if i + 1 < len(args) else "")
                if flag == "c":
                    return None
                if flag == "m":
                    return value.split(".", 1)[0] or None
                skip = 1 if arg[j + 1:] else 2
                break
        i += skip
    return None


def _skip_env(args: Sequence[str]) -> list[str]:
    """``env [OPTIONS] [NAME=VALUE]... CMD ARGS`` -> ``CMD ARGS`` (``-S STRING`` is split into words as env does)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _ENV_VALUE_FLAGS:
            i += 2
        elif arg.startswith(("-S", "--split-string")):
            if arg in ("-S", "--split-string"):
                text, rest = (args[i + 1] if i + 1 < len(args) else ""), args[i + 2:]
            else:
                text, rest = (arg.split("=", 1)[-1] if arg.startswith("--") else arg[2:]), args[i + 1:]
            try:
                return [*shlex.split(text), *rest]
            except ValueError:  # unbalanced quotes: env itself will refuse them; the name stays "env"
                return []
        elif arg == "--":
            return list(args[i + 1:])
        elif (arg.startswith("-") and arg != "-") or ENV_ASSIGNMENT.fullmatch(arg):
            i += 1
        else:
            return list(args[i:])
    return []


def service_from_command(command: str | Sequence[str]) -> str:
    """The service name logwrap uses when none is given, from the command line it runs.

    The program's base name (``/usr/bin/vllm serve`` -> ``vllm``, ``mlflow server`` -> ``mlflow``), except that a
    Python interpreter (``python``, ``python3.11``, ``pypy3``...) is named after what it runs: ``python -m
    vllm.entrypoints.cli.main`` -> ``vllm`` (the top package), ``python -u -X dev -m pkg`` -> ``pkg``, ``python
    train.py`` -> ``train``; ``env [NAME=VALUE...] CMD`` and ``uv/poetry/pdm/pipenv/hatch/rye run CMD`` are named
    after CMD. Anything else, and a launcher given options of its own, keeps the program's base name: pass
    ``--service`` there. Made into a valid name (``[A-Za-z0-9_.-]``, no leading dot, at most 128 characters).
    """
    argv = [command] if isinstance(command, str) else list(command)
    name = ""
    while argv:
        program = os.path.basename(argv[0].rstrip("/"))
        name = _as_name(program)
        if program == "env":
            argv = _skip_env(argv[1:])
        elif program in _LAUNCHERS and len(argv) > 2 and argv[1] == "run" and not argv[2].startswith("-"):
            argv = argv[2:]
        else:
            target = _python_target(argv[1:]) if _PYTHON.fullmatch(program) else None
            name = _as_name(target) if target and _as_name(target) else name
            break
    return name or "service"
