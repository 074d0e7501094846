"""Each public module lists exactly its public names in ``__all__``, sorted (httpx's ``test_exported_members``)."""

from __future__ import annotations

import ast
import importlib
import inspect

import pytest

import mlops_logging

PUBLIC_MODULES = ["fastapi", "gunicorn_conf", "uvicorn_conf", "wrap", "check", "system", "testing"]


def test_the_package_exports_exactly_its_documented_names_and_imports_them_lazily() -> None:
    assert mlops_logging.__all__ == sorted([*mlops_logging._EXPORTS, "__version__"])
    assert set(mlops_logging.__all__) == {
        "configure_logging", "get_logger", "LogSetupError", "TAKEOVER_LOGGERS", "__version__", "bind_contextvars",
        "bound_contextvars", "unbind_contextvars", "clear_contextvars", "get_contextvars"}
    for name in mlops_logging.__all__:
        assert getattr(mlops_logging, name) is not None


def _defined_public_names(module: object) -> list[str]:
    """Names a module defines at its top level (assignments, functions, classes, re-exports), not starting with _."""
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    is_package = hasattr(module, "__path__")
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom) and is_package and node.module != "__future__":
            names.update(alias.asname or alias.name for alias in node.names)  # a package re-exports what it imports
    return sorted(name for name in names if not name.startswith("_") and name != "__all__")


def _private_imports(module: object) -> set[str]:
    """Names a module imports from a private module of the package: what it may re-export on purpose."""
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    return {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom) and node.level
            and (node.module or "").split(".")[-1].startswith("_") for alias in node.names}


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_each_public_module_lists_exactly_its_public_names(name: str) -> None:
    """Everything a public module defines without a leading underscore is in its ``__all__``; anything else there is
    a deliberate re-export from a private module (``check`` exports its settings and trace types)."""
    module = importlib.import_module(f"mlops_logging.{name}")
    assert module.__all__ == sorted(module.__all__), f"{name}.__all__ is not sorted"
    defined = _defined_public_names(module)
    assert set(defined) <= set(module.__all__), f"public names missing from {name}.__all__"
    assert set(module.__all__) - set(defined) <= _private_imports(module)
    for member in module.__all__:
        assert hasattr(module, member)


def test_the_version_is_the_one_pyproject_declares() -> None:
    import tomllib

    from conftest import REPO

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert mlops_logging.__version__ == declared
