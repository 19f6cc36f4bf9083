"""Benchmark and ablation harness for "Feature Pooling" (Pei et al., 2020).

Run ``python -m harness list`` for the tables, variants and profiles. In a notebook,
``harness.results("table2", runs_dir=...)`` and ``harness.summary(...)`` return the
records and the reported table as pandas frames (imported on first use, so that
``import harness`` stays cheap).
"""

from __future__ import annotations

from typing import Any

from harness.core.errors import UserError

__all__ = ["UserError", "results", "summary"]


def __getattr__(name: str) -> Any:
    if name in ("results", "summary"):
        from harness.render import results as frames

        return getattr(frames, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy frames too, for a notebook's completion."""
    return sorted({*globals(), *__all__})
