"""Feature-pooling models in pure PyTorch (no dependency on the harness).

>>> from registry import create_model, list_variants
>>> list_variants("mnist.fp*")

Users add reduction kinds (``register_reduction``), architectures and variants from their
own modules; installed packages declare theirs as entry points (``load_entry_points``).
"""

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
from .ops import FeaturePool, TopKPool, feature_pool, topk_pool
from .reduction import (
    Reduction,
    ReductionKind,
    list_reductions,
    reduction_kind,
    register_reduction,
)

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
