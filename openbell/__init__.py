"""OpenBell: an open-source trading venue with a deterministic matching core."""

__version__ = "0.1.0"
