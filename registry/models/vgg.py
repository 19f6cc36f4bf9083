"""The VGG-16 of the paper's section 4.1(B) and the rows of Tables 2 and 3.

The 13 conv3x3 layers of VGG-16 (with bias), each followed by BN and ReLU, a 2x2
max pool after blocks 1-4 (the fifth pool is removed), then flatten 2x2x512 = 2048
-> one FC to 10 classes. With this layout the baseline has 14,743,626 trainable
parameters, the paper's 14.06M in units of 2^20, and every row of Tables 2-3 lands
on the paper's parameter column.

A reduction may sit after any block X (1..5): after its max pool for X = 1..4 and
after its last conv (with BN and ReLU) for X = 5, which has no pool. The paper
calls that position "ConvX". Any number of positions may be reduced, each with its
own :class:`~registry.reduction.Reduction`. The paper states Xavier initialisation
for its convs (TensorFlow defaults); the same is used here. It also mentions BN
behind the fully connected layers; with a single FC layer producing the logits,
none is added (20 parameters, invisible in the printed digits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._registry import PaperRow, register_arch, register_variant
from ..reduction import Reduction

if TYPE_CHECKING:
    from ..nets.vgg import VGG16

# output channels of each conv, block by block
BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)
POSITIONS = tuple(range(1, len(BLOCKS) + 1))
POOLED = 4  # blocks 1..4 end with a max pool


def check_reductions(reductions: Mapping[int, Reduction]) -> dict[int, Reduction]:
    """Validate ``{position: Reduction}``, with one plain line naming what is wrong."""
    checked = {}
    for position, reduction in reductions.items():
        if isinstance(position, bool) or position not in POSITIONS:
            raise ValueError(
                f"unknown VGG-16 reduction position {position!r}; choose one of 1..{len(BLOCKS)} "
                "(after block X)"
            )
        if not isinstance(reduction, Reduction):
            raise ValueError(f"position {position}: expected a Reduction, got {reduction!r}")
        channels = BLOCKS[position - 1][-1]
        if channels % reduction.stride:
            raise ValueError(
                f"stride {reduction.stride} does not divide the {channels} maps after block "
                f"{position}; choose a divisor of {channels} such as 2 or 4"
            )
        checked[position] = reduction
    return checked


@register_arch("vgg16")
def vgg16(reductions: Mapping[int, Reduction] | None = None, **kwargs: object) -> VGG16:
    from ..nets.vgg import VGG16

    return VGG16(reductions=reductions, **kwargs)


# Rows of Tables 2 (stride 2) and 3 (stride 4) as printed: positions, accuracy,
# parameters (M = 2^20) and FLOPs (about 2 x parameters). The baseline's 93.25% is
# quoted by the paper from another work.
_ROWS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Baseline", ()),
    ("Baseline+FP1", (1,)),
    ("Baseline+FP2", (2,)),
    ("Baseline+FP3", (3,)),
    ("Baseline+FP4", (4,)),
    ("Baseline+FP5", (5,)),
    ("Baseline+2FP", (3, 4)),
    ("Baseline+3FP", (3, 4, 5)),
    ("Baseline+4FP", (2, 3, 4, 5)),
    ("Baseline+5FP", (1, 2, 3, 4, 5)),
)
_PRINTED = {
    "table2": (
        ("93.25%", "14.06", "2.949e7"),
        ("93.53%", "14.02", "2.941e7"),
        ("93.33%", "13.92", "2.919e7"),
        ("93.60%", "13.50", "2.831e7"),
        ("93.55%", "12.93", "2.713e7"),
        ("93.68%", "14.05", "2.947e7"),
        ("93.56%", "12.37", "2.595e7"),
        ("93.69%", "12.36", "2.593e7"),
        ("93.41%", "12.22", "2.563e7"),
        ("93.21%", "12.19", "2.556e7"),
    ),
    "table3": (
        ("93.25%", "14.06", "2.949e7"),
        ("93.61%", "14.01", "2.937e7"),
        ("93.43%", "13.85", "2.904e7"),
        ("93.65%", "13.22", "2.772e7"),
        ("93.67%", "12.37", "2.595e7"),
        ("93.6%", "14.05", "2.946e7"),
        ("93.44%", "11.53", "2.418e7"),
        ("93.65%", "11.51", "2.415e7"),
        ("93.25%", "11.30", "2.371e7"),
        ("92.55%", "11.25", "2.360e7"),
    ),
}
TABLE_STRIDES = {"table2": 2, "table3": 4}
# Single positions with reductions the paper mentions but prints no numbers for.
EXTRA_KINDS = {"conv1x1": "1x1 conv reduction", "topk": "Top-k feature pooling"}


def _paper_row(table: str, label: str, printed: tuple[str, str, str]) -> PaperRow:
    accuracy, params, flops = printed
    values = {"accuracy": accuracy, "params_M_paper_conv": params, "flops_paper_conv": flops}
    return PaperRow(table, label, values)


def variant_name(positions: tuple[int, ...], reduction: Reduction) -> str:
    """``vgg16.at<positions>_<reduction tag>``, e.g. ``vgg16.at345_fp_max_s2``."""
    if not positions:
        return "vgg16.baseline"
    return f"vgg16.at{''.join(map(str, positions))}_{reduction.tag}"


def _register(positions: tuple[int, ...], reduction: Reduction, what: str, **kw: object) -> None:
    where = f"after block{'s' if len(positions) > 1 else ''} {', '.join(map(str, positions))}"
    register_variant(
        variant_name(positions, reduction), "vgg16",
        reductions={p: reduction for p in positions},
        description=f"{what}, stride {reduction.stride}, {where}", **kw,
    )  # fmt: skip


register_variant(
    "vgg16.baseline",
    "vgg16",
    description="VGG-16 baseline (13 conv + BN, 4 max pools, one FC)",
    paper=tuple(_paper_row(t, "Baseline", p[0]) for t, p in _PRINTED.items()),
)
for _table, _stride in TABLE_STRIDES.items():
    for (_label, _positions), _printed in zip(_ROWS[1:], _PRINTED[_table][1:], strict=True):
        _register(_positions, Reduction("fp_max", _stride), "Max feature pooling",
                  paper=(_paper_row(_table, _label, _printed),))  # fmt: skip
    for _kind, _what in EXTRA_KINDS.items():
        for _position in POSITIONS:
            _register((_position,), Reduction(_kind, _stride), _what)


def table_rows(table: str) -> tuple[str, ...]:
    """Variant names of Table 2 or 3: the paper's rows in order, then the extra rows."""
    stride = TABLE_STRIDES[table]
    paper = tuple(variant_name(positions, Reduction("fp_max", stride)) for _, positions in _ROWS)
    extra = tuple(
        variant_name((p,), Reduction(kind, stride)) for kind in EXTRA_KINDS for p in POSITIONS
    )
    return paper + extra
