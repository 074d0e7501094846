"""Reading what was written to disk, and checking it against the record schema."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = json.loads(resources.files("mlops_logging").joinpath("record.schema.json").read_text())
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def read_lines(path: Path) -> list[bytes]:
    """The file's lines as bytes, split on b"\\n" only (a JSON record never contains a raw newline)."""
    data = Path(path).read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path} does not end with a newline: {data[-80:]!r}"
    return data.split(b"\n")[:-1]


def read_records(path: Path, *, validate: bool = True) -> list[dict[str, Any]]:
    """Every line of ``path`` parsed as JSON (fails on a stray non-JSON line) and validated against the schema."""
    records = []
    for number, line in enumerate(read_lines(path), 1):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise AssertionError(f"{path}:{number} is not JSON: {line[:200]!r}") from exc
        if validate:
            assert_valid(record, where=f"{path}:{number}")
        records.append(record)
    return records


def assert_valid(record: dict[str, Any], where: str = "record") -> None:
    """Fail with a readable message when ``record`` breaks the schema."""
    errors = sorted(_VALIDATOR.iter_errors(record), key=str)
    assert not errors, f"{where} breaks the record schema: {errors[0].message} in {record!r}"
