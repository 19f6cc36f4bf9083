"""What a measured column is: declared once, by the task that measures it.

A task lists its :class:`Metric` s (``Task.metrics``) and the conventions lines that define
them (``Task.conventions``); reports, statistics, claims and the cell's log line read them
from there and hold no metric of their own. The costs every trained model has (time,
parameters, FLOPs) are declared here, once, for every task to include.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# a per-noise-level column: psnr_sigma25 is metric "psnr" at sigma 25
_PER_LEVEL = re.compile(r"(\w+?)_sigma(\d+)")


@dataclass(frozen=True)
class Metric:
    """One measured quantity and how a report shows it."""

    name: str  # the key in a record's metrics, and the report's column
    header: str
    unit: str
    fmt: str  # str.format of one value
    higher_is_better: bool | None = None  # None: neither (counts, the noisy input's PSNR)
    integer: bool = False  # exact counts stay integers in CSV and JSON
    deterministic: bool = False  # the same for every seed (architecture only): no spread
    logged: bool = False  # shown in the line each finished cell prints
    per_level: bool = False  # one column per noise level, ``<name>_sigma<level>``


@dataclass(frozen=True)
class Column:
    """A report column: a metric, or a metric at one noise level."""

    metric: Metric
    level: int | None = None

    @property
    def header(self) -> str:
        return self.metric.header if self.level is None else f"{self.metric.header} σ={self.level}"

    @property
    def unit(self) -> str:
        return self.metric.unit

    @property
    def fmt(self) -> str:
        return self.metric.fmt

    @property
    def integer(self) -> bool:
        return self.metric.integer


def find_column(name: str, metrics: Iterable[Metric]) -> Column | None:
    """The column ``name`` among ``metrics`` (a per-level metric matches its sigma columns)."""
    by_name = {m.name: m for m in metrics}
    if name in by_name and not by_name[name].per_level:
        return Column(by_name[name])
    match = _PER_LEVEL.fullmatch(name)
    if match and match[1] in by_name and by_name[match[1]].per_level:
        return Column(by_name[match[1]], int(match[2]))
    return None


def base_name(column: str) -> str:
    """The metric a column reads: ``psnr_sigma25`` -> ``psnr``."""
    match = _PER_LEVEL.fullmatch(column)
    return match[1] if match else column


TRAIN_TIME = Metric("train_time_s", "Train time", "s/epoch", "{:.2f}", False, logged=True)
TEST_TIME = Metric("test_time_s", "Test time", "s, whole test set", "{:.3f}", False, logged=True)
PARAMS = Metric("params", "Params", "exact count", "{:,.0f}", integer=True, deterministic=True)
PARAMS_PAPER = Metric(
    "params_M_paper_conv", "Params, paper conv.", "M = 2^20", "{:.3f}", deterministic=True
)
FLOPS = Metric(
    "flops", "FLOPs", "MACs + elementwise ops/image", "{:.3e}", integer=True, deterministic=True
)
FLOPS_PAPER = Metric(
    "flops_paper_conv", "FLOPs, paper conv.", "paper's rule", "{:.3e}", integer=True,
    deterministic=True,
)  # fmt: skip
COSTS = (TRAIN_TIME, TEST_TIME, PARAMS, PARAMS_PAPER, FLOPS, FLOPS_PAPER)

TIMING_CONVENTION = (
    "train time: median over epochs of one epoch's synchronised training time "
    "(evaluation excluded); test time: median of the synchronised passes over the whole "
    "test set after a warm-up pass."
)
PARAMS_CONVENTION = (
    "params: exact trainable parameters; params (paper conv.): the same in units of 2^20, "
    "as the paper counts."
)
FLOPS_CONVENTION = (
    "FLOPs: true forward cost of one image, fvcore, one multiply-add = 1, comparisons and "
    "elementwise ops (feature pooling, ReLU, tanh, add) = 1, top-k = C*ceil(log2 C) per pixel. "
    "FLOPs (paper conv.): the paper's column, about twice a parameter count (the rule for "
    "this table is below)."
)
# the conventions lines of the cost columns, each with the metrics it describes
COST_CONVENTIONS = (
    (TIMING_CONVENTION, ("train_time_s", "test_time_s")),
    (PARAMS_CONVENTION, ("params", "params_M_paper_conv")),
    (FLOPS_CONVENTION, ("flops", "flops_paper_conv")),
)
