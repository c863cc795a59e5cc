"""Which build of the core runs: compiled (Cython extensions beside the ``.py`` files) or
interpreted (the same ``.py`` files under CPython).

``OPENBELL_PURE_PYTHON=1`` in the environment selects the interpreted core even where the
extensions are built: a finder placed first on ``sys.meta_path`` loads ``openbell.core``
modules from their ``.py`` source only. It is read once, when ``openbell`` is first imported.
The interpreted core is the reference that the compiled one must equal, event for event and
hash for hash.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

PURE_PYTHON_ENV = "OPENBELL_PURE_PYTHON"
_CORE = "openbell.core."


class _SourceOnlyFinder(MetaPathFinder):
    """Finds ``openbell.core.*`` modules in their ``.py`` files, never in extensions."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not fullname.startswith(_CORE) or not path:
            return None
        loader = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)
        for entry in path:
            spec = importlib.machinery.FileFinder(entry, loader).find_spec(fullname, target)
            if spec is not None:
                return spec
        return None


def pure_python_requested() -> bool:
    return os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")


def install() -> None:
    if pure_python_requested() and not any(isinstance(f, _SourceOnlyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceOnlyFinder())


def core_build() -> str:
    """``"compiled"`` or ``"interpreted"``: how the running core's hot modules were loaded."""
    from openbell.core import matching

    origin = getattr(matching, "__file__", "") or ""
    return "compiled" if origin.endswith((".so", ".pyd")) else "interpreted"
