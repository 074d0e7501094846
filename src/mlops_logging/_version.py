"""The package's version (pyproject.toml has the same; a test keeps them equal)."""

__version__ = "0.1.0"
