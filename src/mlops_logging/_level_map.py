"""The one level map: the five levels a record carries, and every name and number a level goes by elsewhere.

Every writer and reader in the package (the structlog chain, the stdlib handler, settings, logwrap's records,
logcheck) maps a level here, so ``warn``, ``FATAL``, ``NOTICE`` and stdlib's 25 mean the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "LEVELS",
    "LEVEL_NAMES",
    "LEVEL_NUMBERS",
    "METHOD_LEVELS",
    "level_from_number",
    "level_named",
    "normalize_level",
]

#: The five levels a record may carry, lowest first.
LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Each level's stdlib ``logging`` number.
LEVEL_NUMBERS: Mapping[str, int] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
#: Every name (upper case) a level goes by -> the level: the five; what other tools write (``WARN``, ``FATAL``,
#: syslog's ``NOTICE`` / ``EMERG`` / ``ALERT``, Java's ``SEVERE``...); stdlib's ``NOTSET``; structlog's and stdlib's
#: method names that are not level names (``msg``, ``log``, ``exception``, ``err``).
LEVEL_NAMES: Mapping[str, str] = {
    **{level: level for level in LEVELS},
    "WARN": "WARNING",
    "FATAL": "CRITICAL",
    "CRIT": "CRITICAL",
    "ERR": "ERROR",
    "EXCEPTION": "ERROR",
    "SEVERE": "ERROR",
    "TRACE": "DEBUG",
    "NOTSET": "DEBUG",
    "NOTICE": "INFO",
    "INFORMATION": "INFO",
    "MSG": "INFO",
    "LOG": "INFO",
    "EMERG": "CRITICAL",
    "EMERGENCY": "CRITICAL",
    "ALERT": "CRITICAL",
    "PANIC": "CRITICAL",
}
#: The same names in lower case, as structlog passes its method names (``info``, ``warn``, ``exception``).
METHOD_LEVELS: Mapping[str, str] = {name.lower(): level for name, level in LEVEL_NAMES.items()}
_BY_NUMBER: tuple[tuple[int, str], ...] = tuple(sorted(((n, lv) for lv, n in LEVEL_NUMBERS.items()), reverse=True))
_AT_NUMBER: Mapping[int, str] = {number: level for level, number in LEVEL_NUMBERS.items()}


def level_named(name: str) -> str | None:
    """The level ``name`` stands for in any case (``warn``, ``Fatal``, ``NOTICE``), or None for an unknown name."""
    return LEVEL_NAMES.get(name.upper())


def normalize_level(name: str) -> str:
    """Map a level name from any source (``warn``, ``fatal``, ``Info``) to one of :data:`LEVELS`; unknown -> INFO."""
    return LEVEL_NAMES.get(name.upper(), "INFO")


def level_from_number(levelno: int) -> str:
    """Map a stdlib level number (including custom ones like 5 or 25) to the nearest level at or below it."""
    exact = _AT_NUMBER.get(levelno)
    if exact is not None:
        return exact
    for number, level in _BY_NUMBER:
        if levelno >= number:
            return level
    return "DEBUG"

