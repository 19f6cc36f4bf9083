"""A study's ablation plot: its metric against the grid axis it sweeps, one line per
reduction method, 95% intervals as bars, the reference row as a dashed line with its
band, and one panel per value of the other swept axis.

The axes come from the study (``TableSpec.axes``: each structured row's ``at``, ``method``
and ``stride``). The x axis is the axis with the most values (stride or position), so
that 5 positions x 4 methods x 3 strides (60 rows) draw as 3 panels of 4 lines of 5
points rather than 60 labels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from harness.render.plotstyle import (
    DOUBLE_COLUMN_IN,
    KIND_COLOURS,
    KIND_LABELS,
    PALETTE,
    new_figure,
)
from harness.render.report import Report, baseline_row, column, higher_is_better

_NUMERIC_AXES = ("stride", "at")
_PANELS_PER_LINE = 3


def ablation_metric(report: Report) -> str | None:
    """The study's first column that improves one way (accuracy, PSNR), if any."""
    return next((c for c in report.spec.columns if higher_is_better(c) is not None), None)


def _order(value: Any) -> tuple[float, str]:
    """Positions (``"2"``, ``"2+4"``) and strides sorted as numbers first."""
    text = str(value)
    head = text.split("+")[0]
    return (float(head) if head.isdigit() else math.inf, text)


def ablation_plot(report: Report) -> Figure:
    """Draw it; raises ValueError when the study has no axis to sweep or no metric."""
    spec, frame = report.spec, report.frame
    metric = ablation_metric(report)
    if metric is None:
        raise ValueError(f"{spec.name} has no column that improves one way to plot")
    reference = baseline_row(spec)
    points = [(i, spec.axes[v]) for i, v in enumerate(frame["variant"])
              if v in spec.axes and v != reference and "method" in spec.axes[v]]  # fmt: skip
    values = {
        a: sorted({str(p[a]) for _, p in points if a in p}, key=_order) for a in _NUMERIC_AXES
    }
    swept = sorted((a for a in _NUMERIC_AXES if values[a]), key=lambda a: -len(values[a]))
    if not points or not swept:
        raise ValueError(f"{spec.name} sweeps no position or stride")
    x_axis = swept[0]
    panel_axis = swept[1] if len(swept) > 1 and len(values[swept[1]]) > 1 else None
    panels = values[panel_axis] if panel_axis else [""]
    archs = sorted({p["arch"] for _, p in points})
    keys = [(a, v) for a in archs for v in panels]  # one panel per architecture and value
    ncols = min(len(keys), _PANELS_PER_LINE)
    nrows = math.ceil(len(keys) / ncols)
    fig = new_figure(DOUBLE_COLUMN_IN, 0.6 + 2.1 * nrows)
    grid = fig.add_gridspec(nrows, ncols)
    scale, label = (100, "%") if column(metric).unit == "fraction" else (1, column(metric).unit)
    value = frame[metric].to_numpy(dtype=float, na_value=np.nan) * scale
    low = _column(frame, f"{metric}_ci95_low") * scale
    high = _column(frame, f"{metric}_ci95_high") * scale
    methods = list(dict.fromkeys(p["method"] for _, p in points))
    colours = {m: KIND_COLOURS.get(m, PALETTE[i % len(PALETTE)]) for i, m in enumerate(methods)}
    first = None
    for k, (arch, panel) in enumerate(keys):
        ax = fig.add_subplot(grid[k // ncols, k % ncols], sharey=first)
        first = first or ax
        xs = values[x_axis]
        for offset, method in enumerate(methods):
            mine = [(xs.index(str(p[x_axis])), i) for i, p in points
                    if p["method"] == method and p["arch"] == arch
                    and (panel_axis is None or str(p[panel_axis]) == panel)]  # fmt: skip
            if not mine:
                continue
            mine.sort()
            # methods side by side around each x, so their bars never hide one another
            x = np.array([j for j, _ in mine]) + (offset - (len(methods) - 1) / 2) * 0.06
            y = np.array([value[i] for _, i in mine])
            err = np.array([[value[i] - low[i], high[i] - value[i]] for _, i in mine]).T
            ax.errorbar(x, y, yerr=np.where(np.isnan(err), 0, np.clip(err, 0, None)),
                        color=colours[method], marker="o", capsize=2, markersize=3)  # fmt: skip
        if reference in list(frame["variant"]):
            r = list(frame["variant"]).index(reference)
            ax.axhline(value[r], color="0.2", linestyle="--", linewidth=0.9)
            if not np.isnan(low[r]):
                ax.axhspan(low[r], high[r], color="0.5", alpha=0.15, linewidth=0)
        ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel("stride" if x_axis == "stride" else "position (after block)")
        name = f"{arch}, " if len(archs) > 1 else ""
        if panel_axis:
            ax.set_title(f"{name}{'stride' if panel_axis == 'stride' else 'position'} {panel}")
        elif name:
            ax.set_title(arch)
        if k % ncols == 0:
            ax.set_ylabel(f"{column(metric).header} ({label})")
    handles = [Line2D([], [], color=colours[m], marker="o", label=KIND_LABELS.get(m, m))
               for m in methods]  # fmt: skip
    if reference in list(frame["variant"]):
        handles.append(Line2D([], [], color="0.2", linestyle="--",
                              label=f"reference: {spec.row_label(reference)}"))  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4))
    return fig


def _column(frame: Any, name: str) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), np.nan)
    return frame[name].to_numpy(dtype=float, na_value=np.nan)
