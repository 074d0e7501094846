"""Build hook for the optional C speedups of logwrap's framer; everything else is in pyproject.toml.

``optional=True`` (as MarkupSafe does): without a C compiler the build skips the extension and the package runs the same
code in pure Python (``mlops_logging._framer`` says how the two paths are kept byte-identical). ``_grammar.h`` is
generated from ``_levels.py`` by ``scripts/gen_grammar.py`` and committed (a test fails when it is stale).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("mlops_logging._speedups", ["src/mlops_logging/_speedups.c"],
                             depends=["src/mlops_logging/_grammar.h"], optional=True)])
