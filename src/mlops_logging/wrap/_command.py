"""What logwrap derives from the command it runs: the service name when none is given, and the command line with
its secrets hidden, as the start record and ``python -m mlops_logging.system`` show it."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Sequence
from urllib.parse import unquote_plus

from .._records import REDACTED, is_secret_abbreviation, is_secret_key, redact

__all__ = ["redact_argv", "service_from_command"]

_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_PYTHON = re.compile(r"(?:python|pypy)(?:\d+(?:\.\d+)*)?[a-z]?")  #: python, python3, python3.11, python3.13t, pypy3
_PYTHON_VALUE_FLAGS = "WX"  #: python's one-letter options that take a value (-c and -m end the options)
_ENV_VALUE_FLAGS = ("-u", "--unset", "-C", "--chdir")  #: env's options that take a value
_LAUNCHERS = ("uv", "poetry", "pdm", "pipenv", "hatch", "rye")  #: `<launcher> run CMD ...` runs CMD
_ENV_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=(.*)", re.DOTALL)


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
        elif (arg.startswith("-") and arg != "-") or _ENV_ASSIGN.fullmatch(arg):
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


# --- redaction of the echoed command line ---------------------------------------------------------------------------

_HEADER = re.compile(r"([A-Za-z0-9-]+):\s*\S.*", re.DOTALL)
#: ``scheme://user:password@host``: the password runs to the last ``@`` before the path (a password may hold one).
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/?#:\s]*):[^/?#\s]*@")
#: ``https://TOKEN@host``: over HTTP a user name without a password is how tokens are passed (GitHub, GitLab).
_URL_TOKEN = re.compile(r"((?:https?|HTTPS?)://)[^/?#:@\s]+@")
_URL_PARAM = re.compile(r"([?&#])([^=&#?\s]+)=([^&#\s]*)")  #: a query (or fragment) parameter with its value
_SHELL_STRING = re.compile(r"[\s;]")  #: a word with these is a shell command line (``sh -c``, ``env -S``)
#: The options whose value is a shell command line: ``sh -c``, ``bash -lc``, ``su -c``, ``env -S``...
_SHELL_OPTION = re.compile(r"-[A-Za-z]*c|-S|--split-string|--command|--shell-command")
_USER_OPTION = ("-u", "--user")  #: curl's ``-u user:password`` (a number after the colon is a group: ``-u 0:0``)
_USER_PASSWORD = re.compile(r"([^:\s]+):(?!\d*$).+", re.DOTALL)
_SHELL_OPERATORS = frozenset(";&|()<>")
#: ``"key": value`` / ``'key': value`` / ``key: value`` in a mapping that is not JSON; the value quoted or bare.
_KEY_VALUE = re.compile(r"""((["']?)([A-Za-z_][\w.-]*)\2\s*[:=]\s*)("(?:[^"\\]|\\.)*"?|'[^']*'?|[^,}\s]+)""")
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./\[\]-]+")  #: a shell word that needs no quotes
_MAX_DEPTH = 4  #: shell strings inside shell strings (``sh -c "bash -c '...'"``) looked into


def redact_argv(argv: Sequence[str]) -> list[str]:
    """Hide the secrets of a command line, keep every option's name: the values of secret options (``--api-key X``,
    ``--token=X``, several values up to the next option as vLLM's ``--api-key A B``, argparse's abbreviations
    ``--api-k X``, ``--hf-tok X``), secret assignments (``HF_TOKEN=X``), secret headers (``Authorization: X``, also
    as ``--header=Authorization: X``), URL passwords (``scheme://user:X@host``), a token as an HTTP URL's user name,
    curl's ``-u user:X``, secret URL query and fragment parameters (``?api_key=X``, ``&sig=X``,
    ``#access_token=X``), secret keys of a JSON value or a dict, and all of these inside a shell command line given as
    one word (``sh -c "vllm serve --api-key X"``). Names are judged by :func:`records.is_secret_key` (and
    :func:`records.is_secret_abbreviation` for options)."""
    return _redact_words(argv, 0)


def _redact_words(words: Sequence[str], depth: int) -> list[str]:
    """:func:`redact_argv` of one command (its first word is the program, never an option)."""
    out: list[str] = []
    hiding = 0  # 2: the word after a secret option is its value; 1: so is each next one up to an option
    for index, word in enumerate(words):
        if (hiding == 2 and not word.startswith("--")) or (
                hiding == 1 and not word.startswith("-") and not _names_a_secret(word)):
            out.append(REDACTED)
            hiding = 1
            continue
        hiding = 0
        if index > 0 and word.startswith("-") and word not in ("-", "--"):
            name, eq, value = word.partition("=")
            if _secret_option(name):
                # `--api-key=A B`: argparse gives the option only A; B is an argument of its own
                out.append(f"{name}={REDACTED}" if eq else word)
                hiding = 0 if eq else 2
            elif eq:
                out.append(f"{name}={_redact_value(value, depth, option=name)}")
            else:
                out.append(word)
            continue
        out.append(_redact_value(word, depth, option=words[index - 1] if index else ""))
    return out


def _secret_option(name: str) -> bool:
    """``--api-key``, ``--api-k`` (an abbreviation argparse accepts), ``--key``, ``-Dpassword``: takes a secret."""
    bare = name.lstrip("-")
    if is_secret_key(bare):
        return True
    return name.startswith("--") and (is_secret_abbreviation(bare) or bare in ("key", "keys"))


def _names_a_secret(word: str) -> bool:
    """``HF_TOKEN=X``, ``Authorization: X``: a word whose value is hidden by its name (which stays)."""
    assign = _ENV_ASSIGN.fullmatch(word) or _HEADER.fullmatch(word)
    return assign is not None and is_secret_key(assign.group(1))


def _redact_value(word: str, depth: int, option: str) -> str:
    """One word that is not an option (``option``: the word before it, or the option it is the ``=`` value of): a
    shell command line after ``-c`` / ``-S``, an assignment, a header, JSON, any other shell command line, a URL.

    A word that starts as a secret assignment or header is hidden whole (``HF_TOKEN=a b``, ``Authorization: Bearer
    X``: its value may hold spaces) unless it is the value of ``-c`` / ``-S``, which is a shell command line."""
    if depth < _MAX_DEPTH and _SHELL_OPTION.fullmatch(option) and _SHELL_STRING.search(word):
        return _redact_shell(word, depth + 1)
    assign = _ENV_ASSIGN.fullmatch(word)
    if assign and is_secret_key(assign.group(1)):
        return f"{assign.group(1)}={REDACTED}"
    header = _HEADER.fullmatch(word)
    if header and is_secret_key(header.group(1)):
        return f"{header.group(1)}: {REDACTED}"
    if word[:1] == "{":
        redacted = _redact_json(word)
        if redacted is not None:
            return redacted
    if depth < _MAX_DEPTH and _SHELL_STRING.search(word):
        return _redact_shell(word, depth + 1)
    if option in _USER_OPTION and (user := _USER_PASSWORD.fullmatch(word)):
        return f"{user.group(1)}:{REDACTED}"
    if "://" in word:
        word = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", word)
        word = _URL_TOKEN.sub(lambda m: f"{m.group(1)}{REDACTED}@", word)
    if "=" in word:
        word = _URL_PARAM.sub(_redact_param, word)
    return word


def _redact_param(match: re.Match[str]) -> str:
    name = match.group(2)
    key = unquote_plus(name) if ("%" in name or "+" in name) else name
    return f"{match.group(1)}{name}={REDACTED}" if is_secret_key(key, in_url=True) else match.group()


def _redact_json(word: str) -> str | None:
    """A JSON object with the values of its secret keys redacted (vLLM's ``--hf-overrides '{...}'``); a mapping that
    is not JSON (a Python dict, a YAML flow mapping) key by key; None: not a mapping."""
    try:
        value = json.loads(word)
    except ValueError:
        return _KEY_VALUE.sub(_redact_key_value, word) if _KEY_VALUE.search(word) else None
    if not isinstance(value, dict):
        return None
    redacted = redact(json.loads(word))
    return word if redacted == value else json.dumps(redacted, ensure_ascii=False, separators=(",", ":"))


def _redact_key_value(match: re.Match[str]) -> str:
    return f"{match.group(1)}{REDACTED}" if is_secret_key(match.group(3)) else match.group()


def _redact_shell(text: str, depth: int) -> str:
    """A shell command line with each of its commands redacted as an argv; what has no secret stays as written."""
    changed: list[tuple[int, int, str]] = []
    command: list[tuple[int, int, str]] = []
    for start, end, value in [*_shell_words(text), (len(text), len(text), None)]:
        if value is not None:
            command.append((start, end, value))
            continue
        redacted = _redact_words([word for _, _, word in command], depth)
        changed += [(s, e, new) for (s, e, old), new in zip(command, redacted, strict=True) if new != old]
        command = []
    pieces, done = [], 0
    for start, end, new in changed:
        pieces += [text[done:start], new if _PLAIN.fullmatch(new) else shlex.quote(new)]
        done = end
    # An unquoted URL's `&` is an operator to the shell, which leaves `sig=X` a word of its own: look again.
    return _URL_PARAM.sub(_redact_param, "".join([*pieces, text[done:]]))


def _shell_words(text: str) -> list[tuple[int, int, str | None]]:
    """The words of a shell command line as the shell reads them (quotes and backslashes removed), each with where
    it stands in ``text``; an operator (``;``, ``&&``, ``|``, ``(``, ``>``...) has the value None. No expansion."""
    words: list[tuple[int, int, str | None]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        if text[i] in _SHELL_OPERATORS:
            while i < n and text[i] in _SHELL_OPERATORS:
                i += 1
            words.append((start, i, None))
            continue
        value: list[str] = []
        while i < n and not text[i].isspace() and text[i] not in _SHELL_OPERATORS:
            char = text[i]
            if char == "'":
                close = text.find("'", i + 1)
                close = n if close < 0 else close  # an unclosed quote runs to the end
                value.append(text[i + 1:close])
                i = close + 1
            elif char == '"':
                i += 1
                while i < n and text[i] != '"':
                    if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\$`':
                        i += 1
                    value.append(text[i])
                    i += 1
                i += 1
            elif char == "\\" and i + 1 < n:
                value.append(text[i + 1])
                i += 2
            else:
                value.append(char)
                i += 1
        words.append((start, min(i, n), "".join(value)))
    return words
