"""Architectures of the paper; importing this package registers them and their variants."""

from . import mnist  # noqa: F401
