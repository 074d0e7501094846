"""Redaction: which names hold secrets, and their values hidden in a record's fields and on a command line.

One judge of names (:func:`is_secret_key`) serves every place a secret can show: the fields of every record
(:func:`redact`, called by the builder), logwrap's echoed command line and the host sampler's process list
(:func:`redact_argv`).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "ENV_ASSIGNMENT",
    "REDACTED",
    "is_secret_abbreviation",
    "is_secret_key",
    "key_words",
    "redact",
    "redact_argv",
]

# --- names: which keys hold secrets -----------------------------------------------------------------------------------

# A key is split into lower-case words (on _ - . spaces digits and camelCase: `accessToken`, `APIKey`, `X-Auth-Token`),
# and its last word decides, with the word before it for `token`, `tokens` and `key`: so `hf_token` and `xApiKey` are
# secret while `max_tokens`, `prompt_token_ids` or `token_count` (everywhere in an LLM stack) are not.
#: What a secret value is replaced with.
REDACTED = "[REDACTED]"
_SECRET_LAST_WORDS = frozenset(
    {
        "password",
        "passwords",
        "passwd",
        "pwd",
        "secret",
        "secrets",
        "cookie",
        "cookies",
        "authorization",
        "apikey",
        "apikeys",
        "credential",
        "credentials",
        "creds",
        "auth",
        "passphrase",
        "passphrases",
        "signature",
        "signatures",
        "bearer",
        "jwt",
        "jwts",
    }
)
# `token` names a piece of text, not a credential, after these (`eos_token`, `time_to_first_token`, `page_token`).
_TEXT_TOKEN_QUALIFIERS = frozenset(
    {"bos", "eos", "pad", "unk", "sep", "cls", "mask", "special", "first", "last", "next", "page", "continuation",
     "stop", "prompt", "completion", "input", "output", "generated", "max", "min", "num", "total"}
)
# `tokens` is a count or a list of text tokens (`max_tokens`, `prompt_tokens`) unless it says what kind of credential.
_SECRET_TOKENS_QUALIFIERS = frozenset(
    {"access", "refresh", "api", "auth", "id", "bearer", "session", "oauth", "csrf", "xsrf", "security", "secret",
     "service", "client", "personal", "hf", "github", "gitlab", "slack", "bot", "jwt"}
)
# `..._key(s)` is secret when the word before it says what kind of key it is.
_SECRET_KEY_QUALIFIERS = frozenset(
    {"api", "private", "access", "secret", "signing", "encryption", "session", "client", "master", "admin", "auth",
     "hmac", "license", "subscription"}
)
# In a URL query string these bare names carry credentials too: Google's `key=`, a signed URL's `sig=`, OAuth's
# `code=` (also `auth_code`, `authorization_code`, `device_code`...).
_SECRET_URL_WORDS = frozenset({"key", "keys", "sig", "code"})
_SECRET_CODE_QUALIFIERS = frozenset({"auth", "authorization", "oauth", "device", "user", "verification", "otp"})
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+")
_secret_cache: dict[str, bool] = {}
_secret_url_cache: dict[str, bool] = {}


def key_words(key: str) -> list[str]:
    """``key`` as lower-case words: ``"xApiKey"`` -> ``["x", "api", "key"]``, ``"HF_TOKEN_2"`` -> ``["hf", "token"]``.

    Letters only: digits and every other character separate words (and are dropped).
    """
    return [word.lower() for word in _WORDS.findall(key)]


def _secret_words(words: list[str]) -> bool:
    if not words:
        return False
    last = words[-1]
    before = words[-2] if len(words) > 1 else ""
    if last == "token":
        return before not in _TEXT_TOKEN_QUALIFIERS
    if last in _SECRET_LAST_WORDS:
        return True
    if last == "tokens":
        return before in _SECRET_TOKENS_QUALIFIERS
    if last in ("key", "keys"):
        return before in _SECRET_KEY_QUALIFIERS
    return False


def is_secret_key(key: str, *, in_url: bool = False) -> bool:
    """True when a field named ``key`` holds a secret (``authorization``, ``api_key``, ``accessToken``, ``set-cookie``).

    ``in_url=True`` judges a URL query parameter, where bare ``key``, ``sig`` and ``code`` (OAuth) are secret too.
    """
    cache = _secret_url_cache if in_url else _secret_cache
    cached = cache.get(key)
    if cached is not None:
        return cached
    words = key_words(key)
    secret = _secret_words(words)
    if in_url and not secret and words:
        secret = (words == [words[-1]] and words[-1] in _SECRET_URL_WORDS) or (
            words[-1] == "code" and len(words) > 1 and words[-2] in _SECRET_CODE_QUALIFIERS)
    if len(cache) < 4096:  # keys are a small set in practice; never grow without bound
        cache[key] = secret
    return secret


#: The words that can end a secret key (with the right word before them for `token(s)` and `key(s)`).
_SECRET_ENDINGS = tuple(sorted(_SECRET_LAST_WORDS | {"token", "tokens", "key", "keys"}))


def is_secret_abbreviation(key: str) -> bool:
    """True when ``key`` may be the start of a secret key's name, as argparse accepts an unambiguous start of a long
    option (``--api-k`` for ``--api-key``, ``--hf-tok`` for ``--hf-token``, ``--pass`` for ``--password``): its last
    word completed to a word that ends secret keys makes it secret. A lone word needs 3 letters (``--to`` is not
    judged), and a short last word (``--top-p``) counts only as the start of ``key(s)`` or ``token(s)``, which need
    the word before them (``--api-k``: yes; ``--top-k``, ``--max-tok``: no)."""
    words = key_words(key)
    if key[-1:] in ("-", "_", "."):
        words.append("")  # `--api-`: the next word has begun
    if not words or (len(words) == 1 and len(words[0]) < 3):
        return False
    last, before = words[-1], words[:-1]
    return any(end.startswith(last) and (len(last) >= 3 or end.startswith(("key", "token")))
               and _secret_words([*before, end]) for end in _SECRET_ENDINGS)


_SCALARS = frozenset({str, int, float, bool, type(None)})
_plain_keys: set[str] = set()  # keys already known not to be secret: the fast path is one set lookup


def redact(record: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace, in place, the value of every secret-looking key with ``[REDACTED]``, also inside nested mappings and
    in header lists (``[("authorization", "Bearer x")]``, ASGI's ``[(b"cookie", b"...")]``)."""
    plain = _plain_keys
    for key, value in record.items():
        if key in plain:
            if type(value) in _SCALARS:
                continue
        elif not isinstance(key, str) or not is_secret_key(key):
            if isinstance(key, str) and len(plain) < 4096:
                plain.add(key)
        else:
            if value is not None:
                record[key] = REDACTED
            continue
        if isinstance(value, Mapping):
            if value:
                record[key] = redact(dict(value))
        elif type(value) in (list, tuple) and value and type(value[0]) in (tuple, list) and len(value[0]) == 2:
            record[key] = _redact_pairs(value)
    return record


def _redact_pairs(pairs: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
    """Header pairs with the values of secret names replaced; anything that is not a list of pairs as it was."""
    out = []
    changed = False
    for pair in pairs:
        if type(pair) in (tuple, list) and len(pair) == 2:
            name = pair[0]
            if isinstance(name, (bytes, bytearray)):
                name = bytes(name).decode("latin-1")
            if isinstance(name, str) and is_secret_key(name) and pair[1] is not None:
                out.append((pair[0], REDACTED))
                changed = True
                continue
        out.append(pair)
    if not changed:
        return pairs
    return out if type(pairs) is list else tuple(out)


# --- the echoed command line: logwrap's start record, the host sampler's processes ------------------------------------

#: ``NAME=VALUE``, as ``env`` and a shell take an assignment.
ENV_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=(.*)", re.DOTALL)

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
    one word (``sh -c "vllm serve --api-key X"``). Names are judged by :func:`is_secret_key` (and
    :func:`is_secret_abbreviation` for options)."""
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
    assign = ENV_ASSIGNMENT.fullmatch(word) or _HEADER.fullmatch(word)
    return assign is not None and is_secret_key(assign.group(1))


def _redact_value(word: str, depth: int, option: str) -> str:
    """One word that is not an option (``option``: the word before it, or the option it is the ``=`` value of): a
    shell command line after ``-c`` / ``-S``, an assignment, a header, JSON, any other shell command line, a URL.

    A word that starts as a secret assignment or header is hidden whole (``HF_TOKEN=a b``, ``Authorization: Bearer
    X``: its value may hold spaces) unless it is the value of ``-c`` / ``-S``, which is a shell command line."""
    if depth < _MAX_DEPTH and _SHELL_OPTION.fullmatch(option) and _SHELL_STRING.search(word):
        return _redact_shell(word, depth + 1)
    assign = ENV_ASSIGNMENT.fullmatch(word)
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
