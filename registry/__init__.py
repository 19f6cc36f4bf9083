"""Feature-pooling models in pure PyTorch (no dependency on the harness).

>>> from registry import create_model, list_variants
>>> list_variants("mnist.fp*")

Users add reduction kinds (``register_reduction``), architectures and variants from their
own modules; installed packages declare theirs as entry points (``load_entry_points``).

Importing the package does not import torch: the metadata (variants, architectures,
reduction kinds) serves commands that only read records (issue 29). A model's network
imports it when built, and the operators below import :mod:`registry.ops` on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import models  # noqa: F401  (registers the architectures and variants)
from ._registry import (
    PaperRow,
    VariantInfo,
    create_model,
    list_archs,
    list_variants,
    load_entry_points,
    loaded_entry_points,
    printed_value,
    register_arch,
    register_variant,
    variant_info,
)
from .reduction import (
    Reduction,
    ReductionKind,
    list_reductions,
    reduction_kind,
    register_reduction,
)

if TYPE_CHECKING:
    from .ops import FeaturePool, TopKPool, feature_pool, topk_pool

_OPS = ("FeaturePool", "TopKPool", "feature_pool", "topk_pool")  # need torch: imported when used

__all__ = [
    "FeaturePool",
    "PaperRow",
    "Reduction",
    "ReductionKind",
    "TopKPool",
    "VariantInfo",
    "create_model",
    "feature_pool",
    "list_archs",
    "list_reductions",
    "list_variants",
    "load_entry_points",
    "loaded_entry_points",
    "printed_value",
    "reduction_kind",
    "register_arch",
    "register_reduction",
    "register_variant",
    "topk_pool",
    "variant_info",
]


def __getattr__(name: str) -> Any:
    if name in _OPS:
        return getattr(importlib.import_module(".ops", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_OPS})
