"""OpenBell: an open-source trading venue with a deterministic matching core."""

from openbell import _build

_build.install()  # OPENBELL_PURE_PYTHON=1: run the core interpreted (see _build.py)

__version__ = "0.1.0"
