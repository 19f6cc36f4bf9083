"""Feature-pooling models in pure PyTorch (no dependency on the harness).

>>> from registry import create_model, list_variants
>>> list_variants("mnist.fp*")
"""

from . import models  # noqa: F401  (registers the architectures and variants)
from ._registry import (
    PaperRow,
    VariantInfo,
    create_model,
    list_archs,
    list_variants,
    printed_value,
    register_arch,
    register_variant,
    variant_info,
)
from .ops import FeaturePool, TopKPool, feature_pool, topk_pool
from .reduction import KINDS, Reduction

__all__ = [
    "KINDS",
    "FeaturePool",
    "PaperRow",
    "Reduction",
    "TopKPool",
    "VariantInfo",
    "create_model",
    "feature_pool",
    "list_archs",
    "list_variants",
    "printed_value",
    "register_arch",
    "register_variant",
    "topk_pool",
    "variant_info",
]
