"""Benchmark and ablation harness for "Feature Pooling" (Pei et al., 2020).

Run ``python -m harness list`` for the tables, variants and profiles.
"""

from harness.core.errors import UserError

__all__ = ["UserError"]
