"""Reports: run records -> one pandas frame per table -> Markdown, LaTeX, CSV, JSON.

The frame follows the CSV contract of DESIGN.md: one line per table row in the
paper's order, ``row`` holding the paper's label, the measured columns, their
``_std`` and ``n_seeds`` when a row has several seeds, and ``paper_<column>`` for
every value the paper prints. Markdown and LaTeX add units and a header that
says where, how and on what data the numbers were made.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.errors import UserError
from harness.core.lazy import lazy
from harness.core.machine import NOISY
from harness.core.metrics import Column, Metric, base_name, find_column
from harness.core.runtime import DIVERGED_LOSS, Runtime
from harness.core.task import get_task, tasks
from harness.data.images import TEST_SETS
from harness.render.provenance import provenance, reproducibility_latex, reproducibility_markdown
from harness.render.timing import COLUMNS as TIMING_COLUMNS
from harness.render.timing import claim_timing, marked, row_timing, timing_notes
from harness.stats.claims import Check, check_all
from harness.stats.intervals import (
    ALPHA,
    MAX_SEEDS,
    POWER,
    SELECT_RULES,
    best_of_2_gain,
    finite,
    holm,
    interval,
    paired,
    select,
)
from harness.stats.resampling import (
    BEST_OF,
    DEFAULT_STATS,
    MIN_BOOTSTRAP,
    MIN_IQM,
    STATS,
    bca_interval,
    compare,
    expected_best,
    interquartile_mean,
    no_interval_reason,
    smallest_sign_flip_p,
)
from harness.store.records import RunStore, write_output
from harness.tables.cells import cell_config, cell_key, test_blocks
from harness.tables.costs import ARCHITECTURE_COLUMNS, architecture
from harness.tables.paper import PROFILES, TableSpec
from registry import variant_info

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")  # a second to import: only when a report is built


@functools.cache  # a process only ever adds tasks, and each lookup scans the entry points
def column(name: str) -> Column:
    """Display facts of a report column, as the task that measures it declares them."""
    for task in tasks().values():
        found = find_column(name, task.metrics)
        if found is not None:
            return found
    raise KeyError(f"no task declares the column {name!r}")


def conventions(spec: TableSpec) -> list[str]:
    """The conventions lines (the task's) that describe columns this table has."""
    have = {base_name(c) for c in spec.columns}
    lines = [line for line, names in get_task(spec.task).conventions if have & set(names)]
    if "flops_paper_conv" in spec.columns:
        lines.append(_PAPER_FLOP_RULES[spec.paper_flops])
    return lines


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
    # (test set, variant) -> column -> seed -> value, and the paper's claims checked on it
    measured: dict[tuple[str | None, str], dict[str, dict[int, float]]] = field(
        default_factory=dict
    )
    checks: list[Check] = field(default_factory=list)
    records: list[dict[str, Any]] = field(
        default_factory=list
    )  # the records shown, newest per cell


def default_profile(spec: TableSpec, store: RunStore) -> str:
    """The profile of the newest record of this table, else ``paper``."""
    newest = max(store.records(spec.name), key=lambda r: r.get("started_at", ""), default=None)
    return newest["config"]["profile"] if newest else "paper"


def _seed_values(records: list[dict[str, Any]], col: str) -> dict[int, float]:
    """One value per seed: ``psnr_sigma25`` reads ``psnr`` from the sigma-25 records;
    other columns are averaged over a seed's noise levels (one value when there are none)."""
    found = _column(col)
    if found is not None and found.level is not None:
        metric, sigma = found.metric.name, found.level
        records = [r for r in records if r["config"].get("sigma") == sigma]
        values = {r["config"]["seed"]: _number(r["metrics"].get(metric)) for r in records}
    else:
        per_seed: dict[int, list[float]] = {}
        for r in records:
            per_seed.setdefault(r["config"]["seed"], []).append(_number(r["metrics"].get(col)))
        values = {seed: sum(v) / len(v) for seed, v in per_seed.items()}
    return values


def _number(value: float | None) -> float:
    """A measurement; NaN where it is missing or unknown (None: FLOPs of a model with an op
    that has no FLOP handle), which the report shows as unknown."""
    return math.nan if value is None else value


def test_set_label(name: str) -> str:
    return TEST_SETS[name].label if name in TEST_SETS else name


def _paper_block(spec: TableSpec, block: str | None) -> str:
    """The block of the paper's table shown beside ours: the same test set, or the
    paper's first one when ours is another (demo photographs, --test-dir)."""
    if block is not None:
        return block
    printed = [p for v in spec.rows for p in variant_info(v).paper if p.table == spec.name]
    return next((p.block for p in [*printed, *spec.quoted]), "")


def build_report(
    spec: TableSpec, profile: str, store: RunStore, test_dir: Path | None = None,
    select_rule: str = "mean", stats: str = DEFAULT_STATS,
) -> Report:  # fmt: skip
    spec.protocol(profile)  # validates the profile
    if select_rule not in SELECT_RULES:
        raise UserError(
            f"unknown --select {select_rule!r}; choose one of: {', '.join(SELECT_RULES)}"
        )
    if stats not in STATS:
        raise UserError(f"unknown --stats {stats!r}; choose one of: {', '.join(STATS)}")
    records = list(store.records(spec.name, profile))
    blocks = test_blocks(spec, profile, test_dir)
    rows, used, measured = _rows(spec, profile, records, blocks, test_dir, select_rule)
    several = any(row["n_seeds"] > 1 for row in rows)
    tests = baseline_tests(spec, measured, blocks, resample=several)
    for row in rows:
        row |= tests.get((row.get("test_set"), row["variant"]), {})
    frame = _ordered(pd.DataFrame(rows), spec, bool(tests), several)
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
        "timing": _timing_warnings(frame, used, spec.columns) + timing_notes(frame),
        **selection_meta(spec, measured, select_rule, baseline_row(spec) is not None),
        "stats": stats,
        "expected_best_of": BEST_OF,
        "provenance": provenance(used),
    }
    checks = check_all(spec.claims, measured, blocks, profile, claim_timing(used, spec.columns))
    return Report(spec, profile, frame, meta, measured, checks, used)


Measured = dict[tuple[str | None, str], dict[str, dict[int, float]]]


def _rows(
    spec: TableSpec, profile: str, records: list[dict[str, Any]],
    blocks: tuple[str | None, ...], test_dir: Path | None, select_rule: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Measured]:  # fmt: skip
    """The table's rows (per test set: each variant's seed statistics and the paper's
    numbers, then the rows the paper quotes), the records they use (the newest per seed
    and noise level) and each row's values per column and seed."""
    rows: list[dict[str, Any]] = []
    used: list[dict[str, Any]] = []
    by_key: dict[str, list[dict[str, Any]]] = {}  # records of each row, oldest first
    for r in sorted(records, key=lambda r: r.get("started_at", "")):
        by_key.setdefault(r.get("cell_key"), []).append(r)
    measured: Measured = {}
    for block in blocks:
        paper_block = _paper_block(spec, block)
        for variant in spec.rows:
            config = cell_config(spec, variant, profile, 0, test_dir=test_dir, test_set=block)
            newest = {(r["config"]["seed"], r["config"].get("sigma")): r
                      for r in by_key.get(cell_key(config), [])}  # fmt: skip
            mine = list(newest.values())
            used += mine
            measured[(block, variant)] = {col: _seed_values(mine, col) for col in spec.columns}
            row = _variant_row(
                spec, profile, variant, paper_block, mine, measured[(block, variant)], select_rule
            )
            rows.append(row | ({"test_set": block} if block else {}))
        for quoted in (q for q in spec.quoted if q.block == paper_block):
            row = {"row": quoted.row, "variant": "", "n_seeds": 0}
            row |= {f"paper_{c}": quoted.number(c) for c in spec.columns if c in quoted.values}
            rows.append(row | ({"test_set": block} if block else {}))
    return rows, used, measured


def _variant_row(
    spec: TableSpec, profile: str, variant: str, paper_block: str,
    mine: list[dict[str, Any]], values: dict[str, dict[int, float]], select_rule: str,
) -> dict[str, Any]:  # fmt: skip
    """One variant's row: statistics over its seeds, the paper's numbers beside them, and
    the architecture's costs where nothing has run."""
    row: dict[str, Any] = {"row": spec.row_label(variant), "variant": variant}
    row |= seed_statistics(values, select_rule)
    paper = variant_info(variant).paper_row(spec.name, paper_block)
    for col in spec.columns:
        if paper and col in paper.values:
            row[f"paper_{col}"] = paper.number(col)
    if not mine:  # nothing run: what the architecture alone says (None: unknown)
        row |= {k: _number(v) for k, v in architecture(spec, profile, variant).items()}
    row |= _time_spread(mine, spec.columns) | row_timing(mine, spec.columns)
    row["n_seeds"] = len({r["config"]["seed"] for r in mine})
    return row


def _ordered(frame: pd.DataFrame, spec: TableSpec, tested: bool, several: bool) -> pd.DataFrame:
    """The frame's columns in the order reports show them: each measured column followed
    by its intervals, spread, tests and the paper's value; integer columns as integers."""
    order = ["row", "variant", *(["test_set"] if "test_set" in frame else [])]
    iqm = several and (frame["n_seeds"] >= MIN_IQM).any()
    for col in spec.columns:
        order += (
            [col]
            + (_interval_columns(col, iqm) if several else [])
            + ([f"{col}_iqr"] if f"{col}_iqr" in frame else [])
            + (_test_columns(col) if tested else [])
            + (_comparison_columns(col) if tested and several else [])
            + ([f"paper_{col}"] if f"paper_{col}" in frame else [])
        )
    timing = [c for c in TIMING_COLUMNS if c in frame]  # appended: the CSV's older columns stay put
    frame = frame.reindex(columns=[*order, "n_seeds", *timing])  # quoted rows lack measured ones
    for col in spec.columns:
        if column(col).integer:
            frame[col] = frame[col].round().astype("Int64")
    return frame


# --- statistics over seeds: intervals, tests against the baseline, selection -------------

# columns that do not change with the seed: no spread, no interval, no test
SIGNIFICANT = "†"  # marks a cell that differs from the baseline row at ALPHA (Holm-adjusted)
_STATS_LINES = {
    "t": "± the half-width of its 95% confidence interval (Student t, n - 1 df); "
    f"{SIGNIFICANT}: the paired t-test against the baseline row gives p < {ALPHA} "
    "(Holm-adjusted across the table's rows, per column)",
    "bootstrap": f"[the BCa bootstrap 95% interval of the mean, from {MIN_BOOTSTRAP} seeds]; "
    f"{SIGNIFICANT}: the BCa 95% interval of the paired difference to the baseline row "
    "excludes 0 (not adjusted for the number of rows)",
    "permutation": "± the half-width of its 95% confidence interval (Student t, n - 1 df); "
    f"{SIGNIFICANT}: the exact sign-flip permutation test of the paired difference to the "
    f"baseline row gives p < {ALPHA} (Holm-adjusted across the table's rows, per column)",
}


def _column(col: str) -> Column | None:
    try:
        return column(col)
    except KeyError:
        return None


def _metric(col: str) -> Metric | None:
    found = _column(col)
    return None if found is None else found.metric


def deterministic(col: str) -> bool:
    """A column that does not change with the seed: no spread, no interval, no test."""
    found = _metric(col)
    return found is not None and found.deterministic


def higher_is_better(col: str) -> bool | None:
    """Which way a column improves (None: neither, e.g. parameters or the noisy input's PSNR)."""
    found = _metric(col)
    return None if found is None or found.deterministic else found.higher_is_better


def _interval_columns(col: str, iqm: bool = False) -> list[str]:
    if deterministic(col):
        return []
    spread = [f"{col}_std", f"{col}_ci95_low", f"{col}_ci95_high"]
    spread += [f"{col}_boot_mean_low", f"{col}_boot_mean_high"]
    if higher_is_better(col) is not None:
        spread += [f"{col}_expected_max"]
    return spread + ([f"{col}_iqm", f"{col}_iqm_low", f"{col}_iqm_high"] if iqm else [])


def _test_columns(col: str) -> list[str]:
    return [] if higher_is_better(col) is None else [f"{col}_delta", f"{col}_p", f"{col}_win_rate"]


_COMPARISON = ("boot_low", "boot_high", "perm_p", "p_improve", "p_improve_low",
               "p_improve_high", "dz", "seeds_needed")  # fmt: skip


def _comparison_columns(col: str) -> list[str]:
    return [] if higher_is_better(col) is None else [f"{col}_{s}" for s in _COMPARISON]


def seed_statistics(values: dict[str, dict[int, float]], rule: str) -> dict[str, float]:
    """A row's number per column under the selection rule, and the spread of the seeds:
    sample std, the Student-t and BCa bootstrap 95% intervals of the mean, the expected
    best of ``BEST_OF`` runs (Dodge et al.) and the interquartile mean with its interval
    (NaN where the seeds are too few)."""
    row: dict[str, float] = {}
    for col, per_seed in values.items():
        better = higher_is_better(col)
        row[col] = select(per_seed, rule, better)
        if deterministic(col):
            continue
        seeds = list(finite(per_seed).values())
        x, (low, high), q = interval(seeds), bca_interval(seeds), interquartile_mean(seeds)
        row |= {f"{col}_std": x.std, f"{col}_ci95_low": x.low, f"{col}_ci95_high": x.high,
                f"{col}_boot_mean_low": low, f"{col}_boot_mean_high": high,
                f"{col}_iqm": q.value, f"{col}_iqm_low": q.low, f"{col}_iqm_high": q.high}  # fmt: skip
        if better is not None:
            row[f"{col}_expected_max"] = expected_best(seeds, BEST_OF, better)
    return row


def baseline_row(spec: TableSpec) -> str | None:
    """The row the others are tested against: a study's reference, else the table's
    baseline variant (``<arch>.baseline``), if it has one."""
    return spec.reference or next((v for v in spec.rows if v.endswith(".baseline")), None)


def baseline_tests(
    spec: TableSpec, measured: dict[tuple[str | None, str], dict[str, dict[int, float]]],
    blocks: tuple[str | None, ...], resample: bool = True,
) -> dict[tuple[str | None, str], dict[str, float]]:  # fmt: skip
    """Each row against the baseline row of its test set, per column that improves one way:
    mean paired difference, paired t-test p-value Holm-adjusted across the table's rows,
    share of seeds on which the row is better; with ``resample``, the statistics of
    :func:`harness.stats.resampling.compare` too (the sign-flip p Holm-adjusted in the same
    family). Empty (NaN) below 2 shared seeds."""
    base = baseline_row(spec)
    if base is None:
        return {}
    out: dict[tuple[str | None, str], dict[str, float]] = {}
    for block in blocks:
        for variant in spec.rows:
            out[(block, variant)] = {}
        others = [v for v in spec.rows if v != base]
        for col in spec.columns:
            better = higher_is_better(col)
            if better is None:
                continue
            results = [
                paired(measured[(block, v)][col], measured[(block, base)][col], better)
                for v in others
            ]
            adjusted = holm([r.p for r in results])
            for v, r, p in zip(others, results, adjusted, strict=True):
                enough = r.delta.n >= 2
                out[(block, v)] |= {
                    f"{col}_delta": r.delta.mean if enough else math.nan,
                    f"{col}_p": p,
                    f"{col}_win_rate": r.win_rate if enough else math.nan,
                }
            out[(block, base)] |= dict.fromkeys(_test_columns(col), math.nan)
            if resample:
                _resampled(out, block, others, base, col, measured)
    return out


def _resampled(
    out: dict[tuple[str | None, str], dict[str, float]], block: str | None, others: list[str],
    base: str, col: str, measured: dict[tuple[str | None, str], dict[str, dict[int, float]]],
) -> None:  # fmt: skip
    """The resampling statistics of each row against the baseline, into ``out``."""
    better = bool(higher_is_better(col))
    found = []
    for v in others:
        a, b = finite(measured[(block, v)][col]), finite(measured[(block, base)][col])
        shared = [s for s in a if s in b]
        found.append(compare([a[s] for s in shared], [b[s] for s in shared], better))
    for v, c, p in zip(others, found, holm([c.perm_p for c in found]), strict=True):
        out[(block, v)] |= {
            f"{col}_boot_low": c.boot_low, f"{col}_boot_high": c.boot_high, f"{col}_perm_p": p,
            f"{col}_p_improve": c.p_improve.value, f"{col}_p_improve_low": c.p_improve.low,
            f"{col}_p_improve_high": c.p_improve.high, f"{col}_dz": c.dz,
            f"{col}_seeds_needed": c.seeds_needed,
        }  # fmt: skip
    out[(block, base)] |= dict.fromkeys(_comparison_columns(col), math.nan)


def selection_meta(
    spec: TableSpec, measured: dict[tuple[str | None, str], dict[str, dict[int, float]]],
    rule: str, has_baseline: bool,
) -> dict[str, Any]:  # fmt: skip
    """The rule in use, how much best-of-2 would add over the mean (mean over rows of
    max(seed 0, seed 1) minus the row's mean, per column that improves upward), and
    whether any row has the 2 seeds the tests need."""
    gains = {}
    for col in spec.columns:
        if higher_is_better(col):
            g = [best_of_2_gain(v[col], True) for v in measured.values()]
            g = [x for x in g if not math.isnan(x)]
            gains[col] = sum(g) / len(g) if g else None
    max_seeds = max((len(finite(v[c])) for v in measured.values() for c in v), default=0)
    return {
        "select": rule,
        "best_of_2_adds": gains,
        "max_seeds": max_seeds,
        "baseline": baseline_row(spec) if has_baseline else None,
    }


# the samples each time column is the median of: epochs (training), passes (testing)
_TIME_SAMPLES = {"train_time_s": "epoch_times_s", "test_time_s": "test_times_s"}
UNRELIABLE_SPREAD = NOISY  # IQR over median above which a time column is flagged (bench's)


def _time_spread(records: list[dict[str, Any]], columns: Iterable[str]) -> dict[str, float]:
    """``<col>_iqr``: the interquartile range of every epoch (or test pass) behind a time
    column, pooled over the row's records (NaN with fewer than two samples)."""
    spread = {}
    for col, field_name in _TIME_SAMPLES.items():
        if col in columns:
            samples = [t for r in records for t in r.get(field_name) or []]
            q1, q3 = np.percentile(samples, [25, 75]) if len(samples) > 1 else (math.nan,) * 2
            spread[f"{col}_iqr"] = q3 - q1
    return spread


def _timing_warnings(
    frame: pd.DataFrame, records: list[dict[str, Any]], columns: Iterable[str]
) -> list[str]:
    """Why a table's time columns may not compare: a wide spread, load from cells run at the
    same time (a record's ``contention``: cells sharing its device), or rows timed in
    different runs."""
    timed = [c for c in (*_TIME_SAMPLES, "time_per_image_s") if c in columns]
    if not timed or not records:
        return []
    warnings = []
    for col in (c for c in timed if f"{c}_iqr" in frame):
        wide = frame.loc[frame[f"{col}_iqr"] > UNRELIABLE_SPREAD * frame[col], "row"].tolist()
        single = frame[col].notna() & frame[f"{col}_iqr"].isna()
        if single.any():
            warnings.append(
                f"{column(col).header.lower()} rests on a single "
                f"{'epoch' if col == 'train_time_s' else 'pass'} for "
                f"{'every row' if single.all() else ', '.join(frame.loc[single, 'row'])}: its "
                "spread is unknown"
            )
        if wide:
            warnings.append(
                f"{column(col).header.lower()} varies by more than {UNRELIABLE_SPREAD:.0%} of its "
                f"median between epochs or passes (IQR) for {', '.join(wide)}"
            )
    shared = sorted({r["config"]["row"] for r in records if (r.get("contention") or 0) > 1})
    if shared:
        warnings.append(f"measured while other cells shared the device: {', '.join(shared)}")
    elif any("contention" not in r for r in records):
        warnings.append(
            "concurrent load was not recorded (other work on the machine may have slowed any row)"
        )
    runs = {r["env"].get("run") for r in records}
    if len(runs) > 1:
        warnings.append(
            f"rows were timed in {len(runs)} separate runs"
            + (" (or runs made before runs were recorded)" if None in runs else "")
            + "; compare times across rows with care"
        )
    return warnings


def _execution(record: dict[str, Any]) -> str:
    """How a record's cell ran (precision, compilation, memory format)."""
    settings = record.get("runtime")
    if not settings:
        return "not recorded"
    return Runtime(**{k: v for k, v in settings.items() if k != "__type__"}).label


def printed_columns(report: Report) -> list[str]:
    """The columns of the main table: those the paper prints for this table (all of them
    when it prints none, as for a table of our own)."""
    printed = [c for c in report.spec.columns if f"paper_{c}" in report.frame]
    return printed or list(report.spec.columns)


def _row_labels(report: Report) -> pd.DataFrame:
    f = report.frame
    out = pd.DataFrame({"Row": marked([
        label if variant else f"{label} (quoted, not measured)"
        for label, variant in zip(f["row"], f["variant"], strict=True)
    ], f)})  # fmt: skip
    if "test_set" in f:
        out.insert(0, "Test set", f["test_set"].map(test_set_label))
    return out


def _shown(col: str) -> Any:
    """A column's value as text, "–" when missing."""
    fmt = column(col).fmt
    return lambda v: "–" if pd.isna(v) else fmt.format(v)


def _display(report: Report, pm: str) -> pd.DataFrame:
    """The main table: ours (± the interval's half-width) beside the paper's value, for the
    columns the paper prints; units are in :func:`units_line`."""
    f, out = report.frame, _row_labels(report)
    for col in printed_columns(report):
        header = column(col).header
        out[header] = _stat_cells(report, col, _shown(col), pm)
        if f"paper_{col}" in f:
            out[header + PAPER_SUFFIX] = f[f"paper_{col}"].map(_shown(col))
    out["Seeds"] = f["n_seeds"].astype(str)
    return out


PAPER_SUFFIX = ", paper"  # the paper's value beside ours: headed "paper" where shown


def _short_headers(display: pd.DataFrame) -> list[str]:
    """Headers for Markdown: each paper column is just "paper", right of ours."""
    return ["paper" if c.endswith(PAPER_SUFFIX) else c for c in display.columns]


def _paired_headers(display: pd.DataFrame) -> pd.MultiIndex:
    """Headers for LaTeX: a metric spans its "ours" and "paper" columns."""
    names = set(display.columns)
    return pd.MultiIndex.from_tuples([
        (c.removesuffix(PAPER_SUFFIX), "paper") if c.endswith(PAPER_SUFFIX)
        else (c, "ours") if c + PAPER_SUFFIX in names else (c, "")
        for c in display.columns
    ])  # fmt: skip


def _costs_display(report: Report, pm: str) -> pd.DataFrame | None:
    """The second table: the columns the paper does not print (exact costs) and the
    spread (IQR) behind each time; None when there are none."""
    f, out = report.frame, _row_labels(report)
    printed = printed_columns(report)
    for col in report.spec.columns:
        header = column(col).header
        if col not in printed:
            out[header] = _stat_cells(report, col, _shown(col), pm)
        if f"{col}_iqr" in f:
            out[f"{header}, IQR"] = f[f"{col}_iqr"].map(_shown(col))
    return None if out.shape[1] == _row_labels(report).shape[1] else out


def units_line(report: Report, columns: Iterable[str]) -> str:
    """The units of the columns a table shows, in one line (the headers stay short)."""
    units = dict.fromkeys(f"{column(c).metric.header}: {column(c).unit}" for c in columns)
    return "Units: " + "; ".join(units) + "."


def _stat_cells(report: Report, col: str, show: Any, pm: str) -> list[str]:
    """A column's cells: the selected value, its 95% interval under the mean rule (± the
    t half-width, or the bootstrap bounds), and the mark when the row differs from the
    baseline, each as ``report --stats`` chose."""
    f, stats = report.frame, report.meta.get("stats", DEFAULT_STATS)
    bounds = "boot_mean" if stats == "bootstrap" else "ci95"
    with_interval = report.meta["select"] == "mean" and f"{col}_{bounds}_low" in f
    low, high = (f.get(f"{col}_{bounds}_{e}") for e in ("low", "high"))
    cells = []
    for i, value in enumerate(f[col]):
        text = show(value)
        if with_interval and not pd.isna(low.iloc[i]):
            if stats == "bootstrap":
                text += f" [{show(low.iloc[i])}, {show(high.iloc[i])}]"
            else:
                text += f" {pm} {show((high.iloc[i] - low.iloc[i]) / 2)}"
        if _differs(f, col, i, stats):
            text += f" {SIGNIFICANT}"
        cells.append(text)
    return cells


def _differs(f: pd.DataFrame, col: str, i: int, stats: str) -> bool:
    """Whether row ``i`` differs from the baseline on ``col`` by the test ``stats`` names."""
    if stats == "bootstrap":
        low, high = f.get(f"{col}_boot_low"), f.get(f"{col}_boot_high")
        return low is not None and (low.iloc[i] > 0 or high.iloc[i] < 0)
    p = f.get(f"{col}_perm_p" if stats == "permutation" else f"{col}_p")
    return p is not None and p.iloc[i] < ALPHA


_RULES = {
    "mean": "Each cell: the mean over the row's seeds",
    "best-of-2": "Each cell: the best of the row's first two seeds (the paper's rule: 'the "
    "results are obtained by the best results in two tests'; higher accuracy, PSNR and SSIM, "
    "lower times; other columns the mean; a row with one seed shows it)",
    "median": "Each cell: the median over the row's seeds (columns that improve neither way: "
    "the mean)",
}


def _statistics_lines(report: Report) -> list[str]:
    """How the numbers were drawn from the seeds, and what the marks mean."""
    m = report.meta
    rule = m["select"]
    text = _RULES[rule] + " (`report --select mean|best-of-2|median`)"
    stats = m.get("stats", DEFAULT_STATS)
    if m["max_seeds"] >= 2 and rule == "mean":
        text += "; " + _STATS_LINES[stats].split(";")[0]
    elif m["max_seeds"] >= 2:
        text += "; 95% intervals of the mean in the CSV"
    lines = [
        text + ". Parameters and FLOPs do not vary with the seed: no spread is given. The "
        "paper's numbers are each the best of two runs (its section 4)."
    ]
    if m["max_seeds"] >= 2:
        lines.append(
            f"Statistics shown: `--stats {stats}`"
            + (" (the default)" if stats == DEFAULT_STATS else f" (default `{DEFAULT_STATS}`)")
            + f" of `report --stats {'|'.join(STATS)}`; "
            + (_STATS_LINES[stats].split("; ")[1] if m["baseline"] else "no baseline row")
            + ". The CSV and JSON hold all three, and the sections below compare them."
        )
    if m["baseline"]:
        if m["max_seeds"] >= 2:
            lines.append(
                "Against the baseline (over the seeds both rows share) the CSV has "
                "`<col>_delta` (mean paired difference), `<col>_p` (paired t, Holm-adjusted), "
                "`<col>_win_rate` (share of seeds better), `<col>_boot_low`/`_boot_high` (BCa "
                "interval of the difference), `<col>_perm_p` (exact sign-flip, Holm-adjusted), "
                "`<col>_p_improve` (P(row better), with `_low`/`_high`), `<col>_dz` (Cohen's "
                "d_z) and `<col>_seeds_needed`; per row `<col>_expected_max` (expected best of "
                f"{BEST_OF} runs) and, from {MIN_IQM} seeds, `<col>_iqm`."
            )
        else:
            lines.append(
                "Tests against the baseline row need 2 or more seeds per row (`run --seeds 2`); "
                "their columns are empty."
            )
    gains = {c: g for c, g in m["best_of_2_adds"].items() if g is not None}
    if rule == "mean" and gains:
        shown = ", ".join(
            f"{column(c).header} {_signed(column(c).fmt, g)}" for c, g in gains.items()
        )
        lines.append(
            f"The paper's best-of-2 rule would add, on average over rows (best of seeds 0 and "
            f"1 minus the mean): {shown}."
        )
    return lines


def title(report: Report) -> str:
    """The table's title; a demo or smoke run says it is not on the data the title names."""
    if report.profile == "paper":
        return report.spec.title
    return f"{report.spec.title} ({report.profile} run, on other data: see below)"


def plural(n: int, word: str) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def nothing_ran(report: Report) -> bool:
    """True for an architecture-only report: no record of the table and profile."""
    return not report.meta["cells_done"]


def _nothing_ran_line(report: Report) -> str:
    filled = [f"`{c}`" for c in report.spec.columns if c in ARCHITECTURE_COLUMNS]
    shown = (
        f"; the architecture columns ({', '.join(filled)}) come from the models alone"
        if filled
        else ""
    )
    return (
        f"**{_NOTHING_RAN}** for profile `{report.profile}` under `{report.meta['runs_dir']}`: "
        f"the measured columns are empty{shown}."
    )


def header_lines(report: Report) -> list[str]:
    m, p = report.meta, report.meta["protocol"]
    lines = []
    if nothing_ran(report):
        lines.append(_nothing_ran_line(report))
    if report.profile in _PROFILE_BANNER:
        lines.append(_PROFILE_BANNER[report.profile])
    if expect := report.spec.expect.get(report.profile):
        lines.append(f"What to expect: {expect}")
    lines.append(f"Data: {'; '.join(m['data']) or 'no runs yet'}.")
    lines.append(get_task(report.spec.task).protocol_line(report.profile, p))
    lines.append(
        f"Cells: {plural(m['cells_done'], 'record')} for {m['rows_done']} of {m['rows']} rows under "
        f"`{m['runs_dir']}`."
        + (
            f" {m['stale_records']} records ignored (other configs, or superseded by newer ones)."
            if m["stale_records"]
            else ""
        )
    )
    lines += _statistics_lines(report)
    if m["measured_on"]:
        lines.append(
            f"Measured on: {', '.join(m['measured_on'])}; code {', '.join(m['commits'])}; "
            f"execution: {' | '.join(m['execution'])}."
        )
    if m.get("paper_block"):
        lines.append(
            f"Paper values beside ours: the paper's {test_set_label(m['paper_block'])} "
            "rows (ours are on a different test set)."
        )
    if m.get("timing"):
        lines.append(
            "Timing, read with care: " + "; ".join(m["timing"]) + ". (IQR: spread of the "
            "epochs or passes behind a time.)"
        )
    if m["diverged"]:
        lines.append(
            f"Diverged during training (loss not finite or above {DIVERGED_LOSS:g}): "
            f"{', '.join(m['diverged'])}."
        )
    if m["image_notes"]:
        label = get_task(report.spec.task).notes_label
        lines.append(f"{label}: {'; '.join(m['image_notes'])}.")
    return lines


def render_markdown(report: Report) -> str:
    parts = [f"# {title(report)}", ""]
    banner = nothing_ran(report) + (report.profile in _PROFILE_BANNER)
    for i, line in enumerate(header_lines(report)):
        parts += [f"> {line}", ""] if i < banner else [f"- {line}"]
    display = _display(report, "±")
    main = display.to_markdown(index=False, headers=_short_headers(display), disable_numparse=True)
    parts += ["", main, ""]
    source = [] if report.spec.source else [PAPER_SOURCE]  # a study has no paper values
    parts += [units_line(report, printed_columns(report)), *source, ""]
    if report.meta.get("figure"):  # set by harness.render.figures.write_table_plot
        parts += [f"![{report.spec.title}]({report.meta['figure']})", ""]
    costs = _costs_display(report, "±")
    if costs is not None:
        shown = [c for c in report.spec.columns if c not in printed_columns(report)]
        parts += [
            f"## {COSTS_TITLE}", "", COSTS_LEGEND, "",
            costs.to_markdown(index=False, disable_numparse=True), "",
            *([units_line(report, shown), ""] if shown else []),
        ]  # fmt: skip
    lines = conventions(report.spec)
    if lines:
        parts += ["Conventions:", *[f"- {c}" for c in lines]]
    if report.spec.notes:
        parts += ["", "Notes:", *[f"- {n}" for n in report.spec.notes]]
    parts += _baseline_markdown(report)
    parts += _selection_markdown(report)
    parts += _claims_markdown(report)
    parts += reproducibility_markdown(report)
    return "\n".join(parts) + "\n"


PAPER_SOURCE = "Paper values are as printed in Pei et al. (2020); ours come from the run records."
COSTS_TITLE = "Beyond the paper's table"
COSTS_LEGEND = (
    "Columns the paper does not print (exact costs, other measures), and the spread (IQR) "
    "of each time over the epochs or passes behind it."
)


def _signed(fmt: str, x: float) -> str:
    return ("+" if x >= 0 else "") + fmt.format(x)


def _upward(report: Report) -> dict[str, Column]:
    """The columns the comparison sections show: those that improve upward (accuracy,
    PSNR, SSIM); times are compared in the CSV."""
    return {c: column(c) for c in report.spec.columns if higher_is_better(c)}


Cell = Any  # (frame line, column name, its Column) -> the cell's text


def _long_frame(report: Report, rows: pd.DataFrame, cells: dict[str, Cell]) -> pd.DataFrame:
    """One line per (row, column): the row's label, its test set where the table has
    several, and ``cells``."""
    lines = []
    upward = _upward(report)
    for _, line in rows.iterrows():
        for col, c in upward.items():
            out = {"Test set": test_set_label(line["test_set"])} if "test_set" in rows else {}
            out |= {"Row": line["row"], "Column": c.header}
            lines.append(out | {name: cell(line, col, c) for name, cell in cells.items()})
    return pd.DataFrame(lines)


def _cell(line: pd.Series, key: str, fmt: str, signed: bool = False) -> str:
    value = line.get(key, math.nan)
    return "–" if pd.isna(value) else _signed(fmt, value) if signed else fmt.format(value)


def _bounds(line: pd.Series, key: str, fmt: str, signed: bool = False) -> str:
    """``[low, high]`` of the columns ``<key>_low`` and ``<key>_high``, or ``–``."""
    if pd.isna(line.get(f"{key}_low", math.nan)):
        return "–"
    low, high = (_cell(line, f"{key}_{e}", fmt, signed) for e in ("low", "high"))
    return f"[{low}, {high}]"


BASELINE_LEGEND = (
    "Over the seeds each row shares with the baseline: Δ, the mean of (row - baseline); its "
    "BCa bootstrap 95% interval; p of the paired t-test and of the exact sign-flip "
    "permutation test (every sign pattern; its smallest possible value with n seeds is "
    "2/2^n), each Holm-adjusted across the table's rows; P(better), the probability that a "
    "run of the row beats a run of the baseline (Agarwal et al. 2021: the share of pairs of "
    "runs, ties counting half), with a percentile interval from resampling each row's runs; "
    "d_z, Cohen's paired effect size (mean / sd of the differences); and the seeds a paired "
    f"t-test would need to tell this Δ from 0 at α = {ALPHA} with {POWER:.0%} power, taking "
    "the observed Δ and sd as true (noncentral t; before Holm's adjustment; – where Δ is 0). "
    "With under about 10 seeds a bootstrap interval cannot reach past the observed "
    "differences and covers less than 95%: read it beside the t-test, not instead."
)


def baseline_frame(report: Report) -> pd.DataFrame | None:
    """Each row against the baseline, one line per column that improves upward: the mean
    paired difference with its BCa interval, both tests' Holm-adjusted p, the probability
    of improvement, the effect size and the seeds that would decide it. None without a
    baseline or 2 seeds."""
    f = report.frame
    if not report.meta["baseline"] or report.meta["max_seeds"] < 2 or not _upward(report):
        return None
    measured = f[f["variant"].astype(bool) & (f["variant"] != report.meta["baseline"])]

    def improve(line: pd.Series, col: str, c: Column) -> str:
        bounds = _bounds(line, f"{col}_p_improve", "{:.2g}")
        return _cell(line, f"{col}_p_improve", "{:.2g}") + ("" if bounds == "–" else f" {bounds}")

    def needed(line: pd.Series, col: str, c: Column) -> str:
        n = line.get(f"{col}_seeds_needed", math.nan)
        return "–" if pd.isna(n) else f"> {MAX_SEEDS}" if math.isinf(n) else f"{n:.0f}"

    return _long_frame(report, measured, {
        "Δ": lambda line, col, c: _cell(line, f"{col}_delta", c.fmt, signed=True),
        "95% CI (BCa)": lambda line, col, c: _bounds(line, f"{col}_boot", c.fmt, signed=True),
        "p (t)": lambda line, col, c: _cell(line, f"{col}_p", "{:.3g}"),
        "p (sign-flip)": lambda line, col, c: _cell(line, f"{col}_perm_p", "{:.3g}"),
        "P(better) [95% CI]": improve,
        "d_z": lambda line, col, c: _cell(line, f"{col}_dz", "{:.3g}"),
        f"Seeds for {POWER:.0%} power": needed,
    })  # fmt: skip


def _baseline_markdown(report: Report) -> list[str]:
    table = baseline_frame(report)
    if table is None:
        return []
    f = report.frame
    counts = f.loc[f["variant"].astype(bool) & (f["n_seeds"] > 0), "n_seeds"]
    n = int(counts.min())  # rows not run say "not run"
    why = no_interval_reason(n)
    legend = (
        f"{BASELINE_LEGEND} The smallest sign-flip p at n = {n}: {smallest_sign_flip_p(n):.3g}."
        + (f" –: no interval at n = {n}: {why}." if why else "")
    )
    return [
        "", "## Against the baseline", "", legend, "",
        table.to_markdown(index=False, disable_numparse=True),
    ]  # fmt: skip


def _selection_markdown(report: Report) -> list[str]:
    """What the paper's best-of-2 rule adds by selection alone, row by row; from
    ``MIN_IQM`` seeds, the interquartile mean with its interval."""
    f = report.frame
    if report.meta["max_seeds"] < 2 or not _upward(report):
        return []
    rows = f[f["n_seeds"] >= 2]

    def by_rule(rule: str) -> Cell:
        def cell(line: pd.Series, col: str, c: Column) -> str:
            seeds = report.measured[(line.get("test_set"), line["variant"])][col]
            return c.fmt.format(select(seeds, rule, True))

        return cell

    cells = {
        "Mean": by_rule("mean"),
        "Best of seeds 0, 1 (paper's rule)": by_rule("best-of-2"),
        f"Expected best of {BEST_OF} (Dodge et al.)": lambda line, col, c: _cell(
            line, f"{col}_expected_max", c.fmt),
    }  # fmt: skip
    iqm = bool((rows["n_seeds"] >= MIN_IQM).any())
    if iqm:
        cells["IQM [95% CI]"] = lambda line, col, c: (
            _cell(line, f"{col}_iqm", c.fmt) + " " + _bounds(line, f"{col}_iqm", c.fmt)
        ).replace("– –", "–")
    return [
        "", "## Best of 2, read honestly", "",
        f"The expected best of {BEST_OF} runs drawn from each row's observed seeds (Dodge et "
        "al. 2019, from their empirical distribution) minus the mean is what picking the best "
        "of two adds by selection alone; the paper's numbers are each such a best of two."
        + (f" IQM: interquartile mean over the row's seeds with a stratified bootstrap "
           f"percentile interval (Agarwal et al. 2021), from {MIN_IQM} seeds." if iqm else ""),
        "", _long_frame(report, rows, cells).to_markdown(index=False, disable_numparse=True),
    ]  # fmt: skip


CLAIMS_LEGEND = (
    "Ours: the claim's quantity over the seeds the rows share, with its 95% interval (Student "
    "t) and n: for 'A beats B', A - B seed by seed; for ratios, the geometric mean of the "
    "per-seed ratios; for 'best', the difference to the closest other row. Claims are checked "
    "on all seeds, whatever `--select` says. Verdicts: supported (every interval clears the "
    "claim's threshold), contradicted (an interval lies wholly on the wrong side), "
    "inconclusive (an interval spans the threshold, or fewer than 2 seeds), not run (a row "
    "has no records), not evidence (demo/smoke) for those profiles, with the verdict the "
    "numbers alone would give."
)


def claims_frame(report: Report) -> pd.DataFrame:
    """One line per claim of the table: the claim, the paper's evidence, ours, the verdict."""
    return pd.DataFrame(
        {
            "Claim": [c.claim.text for c in report.checks],
            "Paper's evidence": [c.claim.source for c in report.checks],
            "Ours: estimate [95% CI] (n)": [c.measurement() for c in report.checks],
            "Verdict": [c.verdict_text() for c in report.checks],
        }
    )


def _claims_markdown(report: Report) -> list[str]:
    if not report.checks:
        return ["", "## Claims", "", "This table carries no checkable claim of the paper."]
    return [
        "", "## Claims", "", CLAIMS_LEGEND, "",
        claims_frame(report).to_markdown(index=False, disable_numparse=True),
    ]  # fmt: skip


def render_latex(report: Report) -> str:
    """The results, then the costs and the claims, each a table whose caption is only its
    title; what the header says (demo banner, data, protocol) is a note below the table."""
    display = _display(report, "±")
    display.columns = _paired_headers(display)
    note = [*header_lines(report), units_line(report, printed_columns(report)), PAPER_SOURCE]
    out = _latex_table(display, title(report), f"tab:{report.spec.name}", note,
                       _column_format(display))  # fmt: skip
    costs = _costs_display(report, "±")
    if costs is not None:
        shown = [c for c in report.spec.columns if c not in printed_columns(report)]
        out += _latex_table(
            costs, f"{report.spec.title}: {COSTS_TITLE.lower()}", f"tab:{report.spec.name}-costs",
            [COSTS_LEGEND, *([units_line(report, shown)] if shown else [])], _column_format(costs),
        )  # fmt: skip
    if report.checks:
        out += _latex_table(
            claims_frame(report), f"{report.spec.title}: the paper's claims checked",
            f"tab:{report.spec.name}-claims", [CLAIMS_LEGEND], "p{4cm}p{4cm}p{4cm}p{3cm}",
        )  # fmt: skip
    return out + reproducibility_latex(report, _latex_text)


def _column_format(display: pd.DataFrame) -> str:
    """Labels (row, test set) left-aligned, numbers right-aligned."""
    labels = len({"Test set", "Row"} & set(display.columns.get_level_values(0)))
    return "l" * labels + "r" * (display.shape[1] - labels)


def _latex_table(
    frame: pd.DataFrame, caption: str, label: str, note: list[str], column_format: str
) -> str:
    """One LaTeX table: ``caption`` above, ``note`` in small type below the rules."""
    styler = frame.style.hide(axis="index").format(escape="latex")
    styler = styler.format_index(escape="latex", axis=1)
    table = styler.to_latex(
        hrules=True, caption=_latex_text(caption), label=label, column_format=column_format,
        position_float="centering", multicol_align="c",
    )  # fmt: skip
    if not note:
        return table
    text = " ".join(note).replace("**", "").replace("`", "")
    end = "\\end{table}\n"
    return (
        table.removesuffix(end)
        + f"\\par\\smallskip{{\\footnotesize {_latex_text(text)}\\par}}\n{end}"
    )


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
    claims = [json_safe(c.as_dict()) for c in report.checks]
    return json.dumps({"meta": report.meta, "rows": rows, "claims": claims}, indent=1) + "\n"


def json_safe(value: Any) -> Any:
    """NaN and infinity as null: JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


RENDERERS = {"md": render_markdown, "tex": render_latex, "csv": render_csv, "json": render_json}


def report_dir(out_dir: Path, profile: str) -> Path:
    """One folder per profile, so that a demo run never overwrites a smoke report."""
    return Path(out_dir) / profile


_NOTHING_RAN = "Nothing has run"


def holds_measured_rows(path: Path) -> bool:
    """Whether an existing report file shows rows of ours (an architecture-only report,
    or no file, does not)."""
    if not path.is_file():
        return False
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
        return "n_seeds" in frame and bool((frame["n_seeds"] > 0).any())
    if path.suffix == ".json":
        return bool(json.loads(path.read_text())["meta"].get("cells_done"))
    return _NOTHING_RAN not in path.read_text()


def write_report(report: Report, out_dir: Path, formats: Iterable[str]) -> list[Path]:
    """Write each format atomically as ``<out_dir>/<profile>/<table>.<ext>``. A report with
    no records never replaces one that holds measured rows: that file is kept, and said so."""
    paths = []
    for fmt in formats:
        path = report_dir(out_dir, report.profile) / f"{report.spec.name}.{fmt}"
        if nothing_ran(report) and holds_measured_rows(path):
            print(f"kept {path}: it holds measured rows and this report has none", file=sys.stderr)
            continue
        write_output(path, RENDERERS[fmt](report).encode())
        paths.append(path)
    return paths


def profiles_with_records(spec: TableSpec, store: RunStore) -> list[str]:
    """The profiles of which the store holds records of ``spec``."""
    return sorted({r["config"]["profile"] for r in store.records(spec.name)})


def no_records_line(report: Report, store: RunStore) -> str:
    """The one line ``report`` prints when a table has no records in the profile asked for."""
    others = profiles_with_records(report.spec, store)
    where = (
        f"records exist for profile {', '.join(others)}"
        if others
        else "none for any other profile either"
    )
    return (
        f"note: no {report.profile} records of {report.spec.name} under {store.root}; {where} "
        "(writing the architecture-only report)"
    )


__all__ = ["PROFILES", "Report", "build_report", "default_profile", "write_report"]
