"""Reports: run records -> one pandas frame per table -> Markdown, LaTeX, CSV, JSON.

The frame follows the CSV contract of DESIGN.md: one line per table row in the
paper's order, ``row`` holding the paper's label, the measured columns, their
``_std`` and ``n_seeds`` when a row has several seeds, and ``paper_<column>`` for
every value the paper prints. Markdown and LaTeX add units and a header that
says where, how and on what data the numbers were made.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from registry import variant_info

from .image_data import TEST_SETS
from .runner import cell_config, cell_key, test_blocks
from .store import RunStore, write_output
from .tables import PROFILES, TableSpec
from .train import Runtime


@dataclass(frozen=True)
class Column:
    header: str
    unit: str
    fmt: str
    integer: bool = False  # exact counts stay integers in CSV and JSON


COLUMNS: dict[str, Column] = {
    "accuracy": Column("Accuracy", "fraction", "{:.4f}"),
    "top1": Column("Top-1", "fraction", "{:.5f}"),
    "top5": Column("Top-5", "fraction", "{:.5f}"),
    "train_time_s": Column("Train time", "s/epoch", "{:.2f}"),
    "test_time_s": Column("Test time", "s, whole test set", "{:.3f}"),
    "params": Column("Params", "exact count", "{:,.0f}", integer=True),
    "params_M_paper_conv": Column("Params, paper conv.", "M = 2^20", "{:.3f}"),
    "flops": Column("FLOPs", "MACs + elementwise ops/image", "{:.3e}", integer=True),
    "flops_paper_conv": Column("FLOPs, paper conv.", "paper's rule", "{:.3e}", integer=True),
    "top1_clean": Column("Top-1 clean", "fraction", "{:.4f}"),
    "top1_adversarial": Column("Top-1 FGSM", "fraction", "{:.4f}"),
    "top1_denoised": Column("Top-1 FGSM + denoiser", "fraction", "{:.4f}"),
    "time_per_image_s": Column("Time per image", "s", "{:.3g}"),
}

CONVENTIONS = (
    "accuracy: fraction of the whole test set classified correctly.",
    "train time: median over epochs of one epoch's synchronised training time "
    "(evaluation excluded); test time: median of 3 synchronised passes over the whole "
    "test set after a warm-up pass.",
    "params: exact trainable parameters; params (paper conv.): the same in units of 2^20, "
    "as the paper counts.",
    "FLOPs: true forward cost of one image, fvcore, one multiply-add = 1, comparisons and "
    "elementwise ops (feature pooling, ReLU, tanh, add) = 1, top-k = C*ceil(log2 C) per pixel. FLOPs (paper conv.): "
    "the paper's column, about twice a parameter count (the rule for this table is below).",
)

_SIGMA_COLUMN = re.compile(r"(psnr|noisy_psnr|ssim)_sigma(\d+)")
_SIGMA_HEADERS = {
    "psnr": ("PSNR", "dB"),
    "noisy_psnr": ("Noisy PSNR", "dB"),
    "ssim": ("SSIM", "0..1"),
}


def column(name: str) -> Column:
    """Display facts of a report column, including the per-noise-level ones."""
    match = _SIGMA_COLUMN.fullmatch(name)
    if match:
        header, unit = _SIGMA_HEADERS[match[1]]
        return Column(f"{header} σ={match[2]}", unit, "{:.3f}" if match[1] == "ssim" else "{:.2f}")
    return COLUMNS[name]


DENOISING_CONVENTIONS = (
    "PSNR: Gaussian noise of std sigma (0-255 scale) added unclipped, drawn from (image, "
    "sigma, seed) alone; the estimate clamped to [0, 1] and rounded to 8 bits; "
    "10*log10(255^2/MSE) over all pixels and channels, no border crop; mean over the test "
    "images. Noisy PSNR: the noisy input under the same rule. SSIM: 8-bit, 11x11 Gaussian "
    "window (sigma 1.5), mean over channels, as MATLAB and KAIR compute it.",
    "train time: median over epochs of one epoch's synchronised training time; test time: "
    "the method's time summed over the whole test set (metrics and file reading excluded); "
    "time per image: the same per image, averaged over images and noise levels.",
    CONVENTIONS[2],
    CONVENTIONS[3],
)

_PAPER_FLOP_RULES = {
    "2x_params": "FLOPs (paper conv.) here = 2 x trainable parameters.",
    "2x_weights": "FLOPs (paper conv.) here = 2 x weights, biases excluded.",
    "2x_conv_weights": "Params and FLOPs (paper conv.) here count conv kernel weights only "
    "(no biases, no BN): params = those weights in units of 2^20, FLOPs = 2 x them.",
}

_PROFILE_BANNER = {
    "demo": "**Demo run** (profile `demo`): small offline data on the CPU; "
    "the numbers are not comparable to the paper's.",
    "smoke": "**Smoke run** (profile `smoke`): seconds of training on a handful of "
    "samples to exercise the pipeline; the numbers mean nothing.",
}


@dataclass
class Report:
    spec: TableSpec
    profile: str
    frame: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)


def default_profile(spec: TableSpec, store: RunStore) -> str:
    """The profile of the newest record of this table, else ``paper``."""
    newest = max(store.records(spec.name), key=lambda r: r.get("started_at", ""), default=None)
    return newest["config"]["profile"] if newest else "paper"


def _column_values(records: list[dict[str, Any]], col: str) -> pd.Series:
    """One value per seed: ``psnr_sigma25`` reads ``psnr`` from the sigma-25 records;
    other columns are averaged over a seed's noise levels (one value when there are none)."""
    match = _SIGMA_COLUMN.fullmatch(col)
    if match:
        metric, sigma = match[1], int(match[2])
        records = [r for r in records if r["config"].get("sigma") == sigma]
        values = {r["config"]["seed"]: r["metrics"].get(metric, math.nan) for r in records}
    else:
        per_seed: dict[int, list[float]] = {}
        for r in records:
            per_seed.setdefault(r["config"]["seed"], []).append(r["metrics"].get(col, math.nan))
        values = {seed: sum(v) / len(v) for seed, v in per_seed.items()}
    return pd.Series(list(values.values()), dtype=float)


def _test_set_label(name: str) -> str:
    return TEST_SETS[name].label if name in TEST_SETS else name


def _paper_block(spec: TableSpec, block: str | None) -> str:
    """The block of the paper's table shown beside ours: the same test set, or the
    paper's first one when ours is another (demo photographs, --test-dir)."""
    if block is not None:
        return block
    printed = [p for v in spec.rows for p in variant_info(v).paper if p.table == spec.name]
    return next((p.block for p in [*printed, *spec.quoted]), "")


def build_report(
    spec: TableSpec, profile: str, store: RunStore, test_dir: Path | None = None
) -> Report:
    spec.protocol(profile)  # validates the profile
    records = list(store.records(spec.name, profile))
    blocks = test_blocks(spec, profile, test_dir)
    rows, used = [], []
    several = False
    for block in blocks:
        paper_block = _paper_block(spec, block)
        for variant in spec.rows:
            config = cell_config(spec, variant, profile, 0, test_dir=test_dir, test_set=block)
            key = cell_key(config)
            newest: dict[tuple, dict[str, Any]] = {}
            for r in sorted(records, key=lambda r: r.get("started_at", "")):
                if r.get("cell_key") == key:
                    newest[(r["config"]["seed"], r["config"].get("sigma"))] = r
            mine = list(newest.values())
            used += mine
            row: dict[str, Any] = {"row": spec.row_label(variant), "variant": variant}
            paper = variant_info(variant).paper_row(spec.name, paper_block)
            for col in spec.columns:
                values = _column_values(mine, col)
                row[col] = values.mean() if len(values) else math.nan
                row[f"{col}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
                if paper and col in paper.values:
                    row[f"paper_{col}"] = paper.number(col)
            seeds = {r["config"]["seed"] for r in mine}
            row["n_seeds"] = len(seeds)
            several |= len(seeds) > 1
            rows.append(row | ({"test_set": block} if block else {}))
        for quoted in (q for q in spec.quoted if q.block == paper_block):
            row = {"row": quoted.row, "variant": "", "n_seeds": 0}
            row |= {f"paper_{c}": quoted.number(c) for c in spec.columns if c in quoted.values}
            rows.append(row | ({"test_set": block} if block else {}))
    frame = pd.DataFrame(rows)
    order = ["row", "variant", *(["test_set"] if "test_set" in frame else [])]
    for col in spec.columns:
        order += (
            [col]
            + ([f"{col}_std"] if several else [])
            + ([f"paper_{col}"] if f"paper_{col}" in frame else [])
        )
    frame = frame.reindex(columns=[*order, "n_seeds"])  # quoted rows lack measured columns
    for col in spec.columns:
        if column(col).integer:
            frame[col] = frame[col].round().astype("Int64")
    envs = {(r["env"]["device_name"], r["env"]["torch"]) for r in used}
    meta = {
        "table": spec.name,
        "title": spec.title,
        "profile": profile,
        "cells_done": len(used),
        "rows_done": int((frame["n_seeds"] > 0).sum()),
        "rows": len(spec.rows),
        "stale_records": len(records) - len(used),
        "data": sorted({r["data"] for r in used}),
        "measured_on": sorted(f"{d} (torch {t})" for d, t in envs),
        "commits": sorted({(r["env"].get("git_commit") or "unknown")[:10] for r in used}),
        "execution": sorted({_execution(r) for r in used}),
        "protocol": cell_config(spec, spec.rows[0], profile, 0)["protocol"],
        "diverged": sorted({r["config"]["variant"] for r in used if r.get("diverged")}),
        "image_notes": sorted({n for r in used for n in r.get("notes", [])}),
        "runs_dir": str(store.root / spec.name / profile),
        "paper_block": _paper_block(spec, None) if blocks == (None,) else "",
    }
    return Report(spec, profile, frame, meta)


def _execution(record: dict[str, Any]) -> str:
    """How a record's cell ran (precision, compilation, memory format)."""
    settings = record.get("runtime")
    if not settings:
        return "not recorded"
    return Runtime(**{k: v for k, v in settings.items() if k != "__type__"}).label


def _display(report: Report, pm: str) -> pd.DataFrame:
    """Strings for humans: mean (± std), paper values beside, units in headers."""
    f = report.frame
    out = pd.DataFrame({"Row": [
        label if variant else f"{label} (quoted, not measured)"
        for label, variant in zip(f["row"], f["variant"], strict=True)
    ]})  # fmt: skip
    if "test_set" in f:
        out.insert(0, "Test set", f["test_set"].map(_test_set_label))
    for col in report.spec.columns:
        c = column(col)
        head = f"{c.header} ({c.unit})"

        def show(v: float, fmt: str = c.fmt) -> str:
            return "–" if pd.isna(v) else fmt.format(v)

        if f"{col}_std" in f:
            out[head] = [
                show(m) + ("" if pd.isna(s) else f" {pm} {show(s)}")
                for m, s in zip(f[col], f[f"{col}_std"], strict=True)
            ]
        else:
            out[head] = f[col].map(show)
        if f"paper_{col}" in f:
            out[f"{c.header}, paper"] = f[f"paper_{col}"].map(show)
    out["Seeds"] = f["n_seeds"].astype(str)
    return out


def _header_lines(report: Report) -> list[str]:
    m, p = report.meta, report.meta["protocol"]
    lines = []
    if report.profile in _PROFILE_BANNER:
        lines.append(_PROFILE_BANNER[report.profile])
    if expect := report.spec.expect.get(report.profile):
        lines.append(f"What to expect: {expect}")
    lines.append(f"Data: {'; '.join(m['data']) or 'no runs yet'}.")
    if report.spec.task == "adversarial":
        lines.append(
            f"Protocol (`{report.profile}`): FGSM epsilon {p['epsilon']:.6g}, no training. "
            f"{p['choices']}"
        )
    else:
        lines.append(
            f"Protocol (`{report.profile}`): {p['epochs']} epochs, batch {p['batch_size']}, "
            f"{p['optimizer']} lr {p['lr']:g}. {p['choices']}"
        )
    lines.append(
        f"Cells: {m['cells_done']} records for {m['rows_done']} of {m['rows']} rows under "
        f"`{m['runs_dir']}`; mean ± sample std over seeds where a row has several."
        + (
            f" {m['stale_records']} records ignored (other configs, or superseded by newer ones)."
            if m["stale_records"]
            else ""
        )
    )
    if m["measured_on"]:
        lines.append(
            f"Measured on: {', '.join(m['measured_on'])}; code {', '.join(m['commits'])}; "
            f"execution: {' | '.join(m['execution'])}."
        )
    if m.get("paper_block"):
        lines.append(
            f"Paper values beside ours: the paper's {_test_set_label(m['paper_block'])} "
            "rows (ours are on a different test set)."
        )
    if m["diverged"]:
        lines.append(f"Diverged during training (loss not finite): {', '.join(m['diverged'])}.")
    if m["image_notes"]:
        label = "Weights and images" if report.spec.task == "adversarial" else "Notes on the runs"
        lines.append(f"{label}: {'; '.join(m['image_notes'])}.")
    return lines


def render_markdown(report: Report) -> str:
    parts = [f"# {report.spec.title}", ""]
    parts += [f"> {line}" if i == 0 and report.profile in _PROFILE_BANNER else f"- {line}"
              for i, line in enumerate(_header_lines(report))]  # fmt: skip
    parts += ["", _display(report, "±").to_markdown(index=False, disable_numparse=True), ""]
    if report.meta.get("figure"):  # set by harness.figures.write_table_plot
        parts += [f"![{report.spec.title}]({report.meta['figure']})", ""]
    parts += [
        "Paper values are as printed in Pei et al. (2020); ours come from the run records.",
        "",
    ]
    base = DENOISING_CONVENTIONS if report.spec.task == "denoising" else CONVENTIONS
    conventions = [*base]
    if "flops_paper_conv" in report.spec.columns:
        conventions.append(_PAPER_FLOP_RULES[report.spec.paper_flops])
    parts += ["Conventions:", *[f"- {c}" for c in conventions]]
    if report.spec.notes:
        parts += ["", "Notes:", *[f"- {n}" for n in report.spec.notes]]
    return "\n".join(parts) + "\n"


def render_latex(report: Report) -> str:
    display = _display(report, "±")
    caption = f"{report.spec.title}. " + " ".join(_header_lines(report))
    styler = display.style.hide(axis="index").format(escape="latex")
    styler = styler.format_index(escape="latex", axis=1)
    caption = caption.replace("**", "").replace("`", "")
    return styler.to_latex(
        hrules=True, caption=_latex_text(caption), label=f"tab:{report.spec.name}",
        column_format="l" + "r" * (display.shape[1] - 1), position_float="centering",
    )  # fmt: skip


_LATEX_SPECIAL = str.maketrans(
    {c: "\\" + c for c in "&%$#_{}"}
    | {"~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}"}
)


def _latex_text(text: str) -> str:
    """Escape free text (the caption) as pandas escapes cells."""
    return text.translate(_LATEX_SPECIAL)


def render_csv(report: Report) -> str:
    return report.frame.to_csv(index=False)


def render_json(report: Report) -> str:
    rows = json.loads(report.frame.to_json(orient="records"))
    return json.dumps({"meta": report.meta, "rows": rows}, indent=1) + "\n"


RENDERERS = {"md": render_markdown, "tex": render_latex, "csv": render_csv, "json": render_json}


def write_report(report: Report, out_dir: Path, formats: Iterable[str]) -> list[Path]:
    """Write each format atomically as ``<out_dir>/<table>.<ext>``."""
    paths = []
    for fmt in formats:
        path = Path(out_dir) / f"{report.spec.name}.{fmt}"
        write_output(path, RENDERERS[fmt](report).encode())
        paths.append(path)
    return paths


__all__ = ["COLUMNS", "PROFILES", "Report", "build_report", "default_profile", "write_report"]
