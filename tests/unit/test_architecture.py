"""The module map of docs/architecture.md, enforced: each module imports only modules of a lower layer, logwrap's
modules never import structlog, and logwrap starts without it."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import mlops_logging

PACKAGE = Path(mlops_logging.__file__).parent

#: Lowest first; a module may import (at any depth in its code) only modules of an earlier layer. The same table is
#: in docs/architecture.md.
LAYERS: list[set[str]] = [
    {"_version", "_errors", "_speedups", "_pattern", "_locks", "_level_map", "_render", "_redaction", "_line_text",
     "_traceparent"},
    {"_records"},
    {"_files", "_levels", "_tracecontext"},
    {"_settings", "_sink", "_console", "_fastpath"},
    {"_framer", "_output", "_context", "check._config", "check._files", "check._records"},
    {"_structlog", "_stdlib", "check._trace", "check._probe", "wrap._command", "wrap._process", "wrap._passthrough",
     "wrap._drain"},
    {"_config", "check._report", "check._follow", "wrap._tty", "wrap._options", "wrap._child", "wrap._outputs",
     "wrap._logfiles"},
    {"fastapi", "uvicorn_conf", "testing", "check._audit", "check._render", "wrap._supervisor"},
    {"gunicorn_conf", "check._cli", "wrap._cli"},
    {"wrap", "check", "system", "__init__"},
    {"wrap.__main__", "check.__main__"},
]
LAYER = {module: index for index, layer in enumerate(LAYERS) for module in layer}
#: What logwrap runs: never structlog, python-json-logger or the in-process logging setup.
WRAP_MODULES = {m for m in LAYER if m.startswith("wrap")} | {"_framer", "_levels", "_pattern", "_records", "_files",
                                                            "_sink", "_settings", "_errors", "_version", "_speedups",
                                                            "_locks", "_level_map", "_render", "_redaction",
                                                            "_line_text", "_fastpath", "_traceparent"}


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(modules of the package, top-level third-party packages) that ``path`` imports anywhere in its code, but for
    the annotations-only imports under ``if TYPE_CHECKING:``."""
    own: set[str] = set()
    other: set[str] = set()
    here = _name(path).split(".")
    package = here[:-1] if path.name != "__init__.py" else here
    if path.name == "__init__.py" and here == ["__init__"]:
        package = []
    tree = ast.parse(path.read_text())
    for block in [n for n in ast.walk(tree) if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING"]:
        block.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1] if node.level > 1 else package
            target = [*base, *(node.module.split(".") if node.module else [])]
            if node.module is None or target == base:
                own.update(".".join([*target, alias.name]) for alias in node.names)
            else:
                own.add(".".join(target))
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("mlops_logging."):
                own.add(node.module.removeprefix("mlops_logging."))
            else:
                other.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mlops_logging."):
                    own.add(alias.name.removeprefix("mlops_logging."))
                else:
                    other.add(alias.name.split(".")[0])
    return {m if m in LAYER or m == "" else m.rsplit(".", 1)[0] if m.rsplit(".", 1)[0] in LAYER else m
            for m in own}, other


def test_every_module_of_the_package_has_a_layer() -> None:
    modules = {_name(path) for path in PACKAGE.rglob("*.py")} | {"_speedups"}  # the C extension imports nothing
    assert modules == set(LAYER)


def test_modules_import_only_lower_layers() -> None:
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        name = _name(path)
        own, _ = _imports(path)
        for target in own - {"", "_version"} if name == "__init__" else own:
            if target == "":
                target = "__init__"
            if target not in LAYER:
                wrong.append(f"{name} imports {target}, which is not in the layer table")
            elif LAYER[target] >= LAYER[name] and not (name == "__init__" and target == "_version"):
                wrong.append(f"{name} (layer {LAYER[name]}) imports {target} (layer {LAYER[target]})")
    assert wrong == []


def test_logwrap_and_its_core_never_import_structlog() -> None:
    for path in PACKAGE.rglob("*.py"):
        if _name(path) in WRAP_MODULES:
            own, other = _imports(path)
            assert not other & {"structlog", "pythonjsonlogger"}, path
            assert own <= WRAP_MODULES | {""}, (path, own - WRAP_MODULES)


def test_python_m_wrap_version_does_not_import_structlog() -> None:
    code = ("import runpy, sys\nsys.argv = ['logwrap', '--version']\ntry:\n"
            "    runpy.run_module('mlops_logging.wrap', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('structlog', 'pythonjsonlogger')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]" and out.startswith("logwrap (mlops-logging) ")


def test_logwrap_starts_without_the_imports_and_compiles_it_does_not_need() -> None:
    """What ``logwrap`` imports before it runs CMD (docs/bench-notes/startup.md): not ``typing``, ``hashlib``'s
    OpenSSL or ``socket`` (a socket stdout imports it), and the grammar's regexes are compiled on first use, not at
    import (the C matcher may never need them). A run proves the records are written without them."""
    code = ("import sys, tempfile\nfrom mlops_logging.wrap import main\nfrom mlops_logging import _levels\n"
            "before = sorted(m for m in ('typing', 'hashlib', '_hashlib', 'socket') if m in sys.modules)\n"
            "compiled = 'LINE_RE' in vars(_levels)\n"
            "status = main(['--log-dir', tempfile.mkdtemp(), '--no-passthrough', '--', sys.executable, '-c', 'pass'])\n"
            "print(before, compiled, status)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[] False 0"


def test_the_grammar_regexes_compile_on_first_use_with_and_without_the_c_speedups() -> None:
    """The lazily compiled regexes are the module's names as before: a traceback line (exact path) and a plain chunk
    through the pure-Python fast path (``MLOPS_LOG_SPEEDUPS=0``) both get them."""
    code = ("from mlops_logging import _levels, _framer\n"
            "framer = _framer.StreamFramer(service='svc', stream='stderr')\n"
            "out = framer.feed(b'WARNING:root:x\\nTraceback (most recent call last):\\n'\n"
            "                  b'  File \"x\"\\nValueError: v\\n', 0.0)\n"
            "out += framer.close(0.0)\n"
            "print('LINE_RE' in vars(_levels), _levels.LINE_RE_B.pattern == _levels.marker_patterns()[0].encode(),"
            " b'ValueError: v' in out)")
    for speedups in ("1", "0"):
        env = {**os.environ, "MLOPS_LOG_SPEEDUPS": speedups}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
        assert out.splitlines()[-1] == "True True True", (speedups, out)


def test_the_documented_layer_table_is_the_enforced_one() -> None:
    """docs/architecture.md's rows (``| 4 | `_framer` |``, ``| 9 | `wrap`, `mlops_logging` |``) name the modules of
    :data:`LAYERS`, each in its layer: the map a reader trusts is the one this file checks."""
    from conftest import REPO

    documented: dict[int, set[str]] = {}
    for row in re.finditer(r"^\| (\d+) \| ([^|]+) \|", (REPO / "docs" / "architecture.md").read_text(), re.M):
        names = {name.replace("/", ".") for name in re.findall(r"`([^`]+)`", row[2])}
        documented.setdefault(int(row[1]), set()).update("__init__" if n == "mlops_logging" else n for n in names)
    assert documented == dict(enumerate(LAYERS))
