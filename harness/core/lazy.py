"""Modules imported on first use.

``python -m harness list``, ``plan``, ``report`` and ``--help`` must start within 1.3x of
``import torch`` (issue 29) and never import torch, but the modules they import also serve
commands that need torch, torchvision, scipy, pandas, matplotlib, fvcore or scikit-image,
each of which takes from a fraction of a second to several seconds to import. Those modules bind the heavy
library to a :func:`lazy` stand-in (the real import under ``TYPE_CHECKING``, so type
checkers see the library), and it is imported when one of its attributes is first used.
``tests/test_startup.py`` checks that importing the CLI leaves them unloaded.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _LazyModule(ModuleType):
    """Stands for the module of the same name; imports it on the first attribute access."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attr)


def lazy(name: str) -> Any:
    """A stand-in for module ``name`` (dotted names allowed) that imports it when used."""
    return _LazyModule(name)
