"""The docs back their claims with the tests that prove them, cited in square brackets ([`test_a`, `test_b`]): every
cited test, and every cited test file, exists under tests/, so a renamed or deleted test cannot leave a claim
unproven."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO

DOCS = [REPO / "docs" / "references" / "LOGGING.md", REPO / "docs" / "architecture.md"]
TESTS = REPO / "tests"

#: A cited test: ``test_name``, with an optional ``[param]`` suffix and an optional ``path/file.py::`` prefix.
_TEST = re.compile(r"(?:(?P<file>[\w./-]+\.py)::)?(?P<name>test_\w+)(?:\[[^\]]*\])?")
#: A cited test file (possibly followed by pytest options: ``tests/unit/test_lines.py -k vllm``).
_FILE = re.compile(r"(?P<file>tests/[\w./-]+\.py)(?:\s.*)?")


def bracketed_spans(text: str) -> Iterator[str]:
    """The backticked spans inside each ``[`...`]`` citation (which may span lines and hold ``[param]`` ids)."""
    start = text.find("[`")
    while start >= 0:
        end, in_code = start + 1, False
        while end < len(text) and (in_code or text[end] != "]"):
            in_code ^= text[end] == "`"
            end += 1
        yield from re.findall(r"`([^`]+)`", text[start + 1:end])
        start = text.find("[`", end)


def cited(text: str) -> tuple[list[tuple[str | None, str]], list[str]]:
    """``([(file or None, test name)], [test file])`` cited in ``text``; other spans (commands, paths) are prose."""
    tests: list[tuple[str | None, str]] = []
    files: list[str] = []
    for span in bracketed_spans(text):
        if match := _TEST.fullmatch(span):
            tests.append((match["file"], match["name"]))
        elif match := _FILE.fullmatch(span):
            files.append(match["file"])
    return tests, files


def defined_tests() -> dict[str, set[str]]:
    """Test file (relative to the repo) -> the test functions and methods it defines."""
    out = {}
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        out[path.relative_to(REPO).as_posix()] = {
            node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")}
    return out


def test_the_citation_reader_finds_names_with_param_ids_and_file_prefixes_across_lines() -> None:
    text = ("a claim [`test_one`, `test_two[blocking]` and `[non-blocking]`; `tests/unit/test_x.py -k y`] and\n"
            "another [`tests/unit/test_x.py::test_three`,\n`test_four`] but not `test_outside` or [a `test_prose`]")
    assert cited(text) == ([(None, "test_one"), (None, "test_two"), ("tests/unit/test_x.py", "test_three"),
                            (None, "test_four")], ["tests/unit/test_x.py"])


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_test_a_doc_cites_exists(doc: Path) -> None:
    tests, files = cited(doc.read_text(encoding="utf-8"))
    assert tests, f"{doc.name} cites no test: the citation reader no longer reads it"
    defined = defined_tests()
    everywhere = set().union(*defined.values())
    missing = [f"{file}::{name}" if file else name for file, name in tests
               if name not in (everywhere if file is None else
                               set().union(*(names for path, names in defined.items() if path.endswith(file))))]
    assert missing == [], f"{doc.name} cites tests that do not exist"
    assert [file for file in files if not (REPO / file).is_file()] == [], f"{doc.name} cites missing test files"
