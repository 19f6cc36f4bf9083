"""Provenance: where the numbers of a report came from, read from its records.

:func:`provenance` gathers what the records say (code version, command, software,
devices, hosts, times, data files and their hashes, seeds, compute) into the report's
``meta``; :func:`reproducibility_items` answers the reproducibility checklist items
(NeurIPS, Papers with Code) that those data can answer, for every report format.
Records written before a field existed lack it: the answer says "not recorded".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.render.report import Report

NOT_RECORDED = "not recorded"


def _values(records: list[dict[str, Any]], get: Any) -> list[Any]:
    """The distinct values of ``get(record)``, sorted, ``None`` (not recorded) last."""
    found = {get(r) for r in records}
    return sorted(v for v in found if v is not None) + [None] * (None in found)


def provenance(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the records behind a report say about how they were made (JSON data)."""
    env = [r["env"] for r in records]
    files: dict[str, dict[str, Any]] = {}
    for r in records:
        for entry in r.get("data_files") or []:
            files[f"{entry.get('path')}|{entry.get('value')}"] = entry
    hours = sum(r["wall_s"] for r in records) / 3600
    on_gpu = any(str(e.get("device", "")).startswith("cuda") for e in env)
    return {
        "code": _values(records, lambda r: _code(r["env"])),
        "commands": _values(records, lambda r: r.get("command") or None),
        "software": _values(records, lambda r: _software(r["env"])),
        "devices": _values(records, lambda r: r["env"].get("device_name")),
        "hosts": _values(records, lambda r: r.get("host")),
        "started": min((r["started_at"] for r in records if r.get("started_at")), default=None),
        "ended": max((r["ended_at"] for r in records if r.get("ended_at")), default=None),
        "data": _values(records, lambda r: r["data"]),
        "data_files": sorted(files.values(), key=lambda e: str(e.get("path"))),
        "records_without_data_files": sum("data_files" not in r for r in records),
        "seeds": sorted({r["config"]["seed"] for r in records}),
        "cells": len(records),
        "compute_hours": hours,
        "compute_unit": "GPU-hours" if on_gpu else "CPU-hours",
    }


def _code(env: dict[str, Any]) -> str | None:
    commit = env.get("git_commit")
    if commit is None:
        return None
    dirty = env.get("git_dirty")
    state = {
        True: "with uncommitted changes",
        False: "clean",
        None: f"uncommitted changes: {NOT_RECORDED}",
    }
    return f"{commit[:12]} ({state[dirty]})"


def _software(env: dict[str, Any]) -> str:
    cudnn = env.get("cudnn", NOT_RECORDED) if "cudnn" in env else NOT_RECORDED
    topk = f", top-k in {env['topk']}" if "topk" in env else ""  # older records lack it
    return (
        f"torch {env.get('torch')}, CUDA {env.get('cuda') or 'none'}, cuDNN {cudnn or 'none'}, "
        f"Python {env.get('python', NOT_RECORDED)}{topk}"
    )


def _listed(values: list[Any]) -> str:
    return "; ".join(NOT_RECORDED if v is None else str(v) for v in values) or NOT_RECORDED


def _file_line(entry: dict[str, Any]) -> str:
    extra = f", {entry['files']:,} files" if "files" in entry else ""
    size = f", {entry['bytes']:,} bytes" if "bytes" in entry else ""
    return f"`{entry.get('path')}`: {entry.get('kind')} {entry.get('value')}{extra}{size}"


def reproducibility_items(report: Report) -> list[tuple[str, str]]:
    """(checklist item, answer) pairs for a report's Reproducibility section."""
    p, m = report.meta["provenance"], report.meta
    if not p["cells"]:
        return [("Runs", "none: nothing has run for this table and profile")]
    files = "; ".join(_file_line(e) for e in p["data_files"])
    if p["records_without_data_files"]:
        files += ("; " if files else "") + (
            f"file hashes {NOT_RECORDED} for {p['records_without_data_files']} of {p['cells']} records"
        )
    n = report.frame.loc[report.frame["n_seeds"] > 0, "n_seeds"]
    runs = (
        f"{n.min()} per row" if n.min() == n.max() else f"{n.min()} to {n.max()} per row"
    ) + f" ({p['cells']} cell records in all; the `Seeds` column gives each row's n)"
    return [
        ("Code", f"harness commit {_listed(p['code'])}"),
        ("Command", _listed(p["commands"])),
        ("Software", _listed(p["software"])),
        ("Hardware", f"{_listed(p['devices'])} on host {_listed(p['hosts'])}"),
        ("When", f"{p['started'] or NOT_RECORDED} to {p['ended'] or NOT_RECORDED} (UTC)"),
        ("Data", _listed(p["data"])),
        ("Data files", files),
        ("Seeds", ", ".join(map(str, p["seeds"]))),
        ("Runs behind each number (n)", runs),
        ("Error bars", _error_bars(m)),
        (
            "Compute",
            f"{p['compute_hours']:.3g} {p['compute_unit']} (the sum of the records' "
            "wall times, data loading and testing included)",
        ),
    ]


def _error_bars(meta: dict[str, Any]) -> str:
    if meta["max_seeds"] < 2:
        return "none: one seed per row, so no spread over seeds can be given (`run --seeds N`)"
    if meta["select"] != "mean":
        return (
            f"none in the table (rule `{meta['select']}`); the CSV holds each row's std and "
            "95% interval of the mean over seeds"
        )
    return (
        "± the half-width of the 95% confidence interval of the mean over seeds (Student t, "
        "n - 1 degrees of freedom), the variation being over training seeds (initialisation, "
        "data order, augmentation); the CSV also holds the sample std"
    )


def reproducibility_markdown(report: Report) -> list[str]:
    items = reproducibility_items(report)
    return ["", "## Reproducibility", "", *[f"- **{k}**: {v}" for k, v in items]]


def reproducibility_latex(report: Report, escape: Callable[[str], str]) -> str:
    """The section as an itemised paragraph (``escape``: the report's LaTeX escaping)."""
    lines = [
        rf"\item \textbf{{{escape(k)}}}: {escape(v.replace('`', ''))}"
        for k, v in reproducibility_items(report)
    ]
    return "\n".join([r"\paragraph{Reproducibility}", r"\begin{itemize}", *lines,
                      r"\end{itemize}", ""])  # fmt: skip
