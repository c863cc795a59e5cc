"""Build of the compiled core: Cython 3 compiles the hot modules of ``openbell/core`` (pure-Python
mode, types in the ``.pxd`` beside each ``.py``) to C extensions. The same ``.py`` files run
interpreted with ``OPENBELL_PURE_PYTHON=1``. Everything else is in ``pyproject.toml``."""

from __future__ import annotations

import shutil
import sys

from setuptools import Extension, setup

COMPILED = ["ledger", "pool", "book", "breakers", "matching"]


def _extensions() -> list[Extension]:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        sys.exit("openbell: a C compiler (gcc) is needed to build the compiled core")
    from Cython.Build import cythonize

    modules = [
        Extension(f"openbell.core.{name}", [f"openbell/core/{name}.py"]) for name in COMPILED
    ]
    return cythonize(
        modules,
        language_level=3,
        compiler_directives={
            "boundscheck": False,  # slots and accounts are checked where they come from
            "wraparound": True,  # lists are indexed with [-1] (best prices)
            "initializedcheck": False,
            "cdivision": False,  # Python's floor division and modulo, also on C integers
            "embedsignature": True,
            "annotation_typing": False,  # types come from the .pxd files; annotations are for mypy
        },
    )


setup(ext_modules=_extensions())
