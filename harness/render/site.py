"""A static HTML site of the reports: ``python -m harness site`` and ``run --site``.

One page per report and an index. Each page is drawn from the same :class:`Report` the
Markdown, LaTeX and CSV come from, so a study that builds a Report gets a page with no
code here. The site opens from disk (``file://``), loads nothing from the network, and
its one script, ``static/sort.js`` (package data), sorts tables by a click on a header.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import UserError
from harness.core.lazy import lazy
from harness.render.figures import FIGURES_DIR, plot_inputs, table_plot
from harness.render.plotstyle import render
from harness.render.report import (
    BASELINE_LEGEND,
    CLAIMS_LEGEND,
    COSTS_LEGEND,
    COSTS_TITLE,
    PAPER_SOURCE,
    SIGNIFICANT,
    Report,
    baseline_frame,
    column,
    conventions,
    header_lines,
    nothing_ran,
    printed_columns,
    test_set_label,
    title,
)
from harness.stats.claims import NOT_EVIDENCE, Check
from harness.stats.intervals import ALPHA
from harness.store.records import RunStore, write_output
from harness.tables.cells import table_cells

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")  # a second to import: only when a site is built

STATIC_DIR = "static"
ASSETS = ("site.css", "sort.js")
BANNERS = ("**Nothing has run**", "**Demo run**", "**Smoke run**")  # header lines shown boxed

# record fields that are measurements or bookkeeping, not where and how a cell ran
_NOT_PROVENANCE = frozenset(
    {"config", "metrics", "history", "epoch_times_s", "test_times_s", "notes", "key",
     "cell_key", "weights", "status", "diverged", "_path", "schema", "timing"}
)  # fmt: skip
_MAX_SHOWN = 4  # distinct values of a provenance field listed before "and N more"


@dataclass
class Page:
    """One report as a page of the site: its file, plot and the cells that failed."""

    report: Report
    file: str
    figure: str | None = None
    failed: dict[tuple[str | None, str], list[str]] = field(default_factory=dict)


def write_site(reports: Sequence[Report], store: RunStore, out: Path) -> Path:
    """Write the site for ``reports`` into ``out`` (pages, plots, assets); returns the
    index page. Pages of one table in two profiles get the profile in their name."""
    out = Path(out)
    names = [r.spec.name for r in reports]
    pages = []
    for report in reports:
        twice = names.count(report.spec.name) > 1
        stem = f"{report.spec.name}-{report.profile}" if twice else report.spec.name
        page = Page(report, f"{stem}.html", _draw_plot(report, out, stem), _failures(report, store))
        write_output(out / page.file, _page(page).encode())
        pages.append(page)
    for name in ASSETS:
        source = resources.files("harness.render").joinpath(STATIC_DIR, name)
        write_output(out / STATIC_DIR / name, source.read_bytes())
    index = out / "index.html"
    write_output(index, _index(pages, store).encode())
    return index


def _draw_plot(report: Report, out: Path, stem: str) -> str | None:
    """The table's plot as PNG (and PDF) in the site's figures folder (kept as it is when
    drawn before from the same rows); None if the table has no columns a plot is defined
    for."""
    try:
        render(lambda: table_plot(report), out / FIGURES_DIR, stem, inputs=plot_inputs(report))
    except UserError:
        return None
    return f"{FIGURES_DIR}/{stem}.png"


def _failures(report: Report, store: RunStore) -> dict[tuple[str | None, str], list[str]]:
    """(test set, variant) -> the last line of each error its cells left (cells that
    failed and have not succeeded since)."""
    seeds = max(1, report.meta.get("max_seeds", 1))
    found: dict[tuple[str | None, str], list[str]] = {}
    for config in table_cells(report.spec, report.profile, seeds):
        path = store.error_path(config)
        if path.is_file():
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            where = (config.get("test_set"), config["variant"])
            found.setdefault(where, []).append(
                f"seed {config['seed']}: {lines[-1] if lines else '?'}"
            )
    return found


# --- HTML pieces ---------------------------------------------------------------------


def _inline(text: str) -> str:
    """The reports' light markup (``**bold**``, `` `code` ``) as HTML, everything escaped."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _document(heading: str, body: Iterable[str], home: bool = True) -> str:
    nav = '<nav><a href="index.html">All tables</a></nav>' if home else ""
    return "\n".join([
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{html.escape(heading)}</title>",
        f'<link rel="stylesheet" href="{STATIC_DIR}/site.css">', "</head>", "<body>", nav,
        f"<h1>{html.escape(heading)}</h1>", *body,
        f'<script src="{STATIC_DIR}/sort.js"></script>', "</body>", "</html>", "",
    ])  # fmt: skip


def _cell(text: str, sort: Any = None, cls: str = "", tip: str = "") -> str:
    attrs = ""
    if sort is not None:
        attrs += f' data-sort="{html.escape(_sort_value(sort))}"'
    if cls:
        attrs += f' class="{cls}"'
    if tip:
        attrs += f' title="{html.escape(tip)}"'
    return f"<td{attrs}>{text}</td>"


def _sort_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return ""
    return repr(float(value)) if isinstance(value, int | float) else str(value)


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], row_classes: Iterable[str] = (),
    cls: str = "sortable", tips: Sequence[str] = (),
) -> str:  # fmt: skip
    """A table from ready cells (``<td>`` strings); headers are plain text."""
    head = "".join(
        f'<th scope="col"{f" title={json.dumps(t)}" if t else ""}>{html.escape(h)}</th>'
        for h, t in zip(headers, [*tips, *[""] * len(headers)], strict=False)
    )
    classes = list(row_classes)
    body = "\n".join(
        f'<tr{f" class={json.dumps(classes[i])}" if i < len(classes) and classes[i] else ""}>'
        + "".join(r) + "</tr>"
        for i, r in enumerate(rows)
    )  # fmt: skip
    return (
        f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table></div>"
    )


def _frame_table(frame: pd.DataFrame) -> str:
    """A frame of strings (the baseline and claims tables the Markdown shows) as a table."""
    rows = [[_cell(_inline(str(v))) for v in row] for row in frame.itertuples(index=False)]
    return _table(list(frame.columns), rows)


# --- a table's page ------------------------------------------------------------------


def _value(report: Report, i: int, col: str) -> str:
    """Our value of ``col`` in row ``i``: the number, ± the 95% interval's half-width and
    the interval itself where there are seeds enough, † where it differs from the baseline."""
    f, fmt = report.frame, column(col).fmt
    value = f[col].iloc[i]
    if pd.isna(value):
        return _cell("–", None, "num missing", "not measured")
    text = html.escape(fmt.format(value))
    low, high = (f.get(f"{col}_ci95_{e}") for e in ("low", "high"))
    if low is not None and not pd.isna(low.iloc[i]):
        half = (high.iloc[i] - low.iloc[i]) / 2
        text += f" ± {html.escape(fmt.format(half))}"
        text += (
            f'<span class="ci">95% CI [{html.escape(fmt.format(low.iloc[i]))}, '
            f"{html.escape(fmt.format(high.iloc[i]))}]</span>"
        )
    p = f.get(f"{col}_p")
    tip = ""
    if p is not None and not pd.isna(p.iloc[i]):
        tip = f"against the baseline: p = {p.iloc[i]:.3g} (paired t-test, Holm-adjusted)"
        text += f" {SIGNIFICANT}" if p.iloc[i] < ALPHA else ""
    return _cell(text, value, "num", tip)


def _paper_value(report: Report, i: int, col: str) -> str:
    value = report.frame[f"paper_{col}"].iloc[i]
    if pd.isna(value):
        return _cell("–", None, "num paper missing", "the paper prints no value here")
    return _cell(html.escape(column(col).fmt.format(value)), value, "num paper")


def _status(page: Page, i: int) -> tuple[str, str]:
    """A row's state as (cell, row class): measured, failed, not run or quoted."""
    f = page.report.frame
    variant, seeds = f["variant"].iloc[i], int(f["n_seeds"].iloc[i])
    block = f["test_set"].iloc[i] if "test_set" in f else None
    errors = page.failed.get((None if pd.isna(block) else block, variant), [])
    if not variant:
        return _cell("quoted", None, "status", "quoted from another paper, not measured"), "quoted"
    if errors:
        text = f"failed ({len(errors)} cell{'s' * (len(errors) > 1)})"
        return _cell(html.escape(text), None, "status", "\n".join(errors)), "failed"
    if not seeds:
        return _cell("not run", None, "status", "no record of this row"), "not-run"
    return _cell(f"{seeds} seed{'s' * (seeds > 1)}", seeds, "status"), ""


def _row_cells(report: Report, i: int) -> list[str]:
    f = report.frame
    cells = []
    if "test_set" in f:
        cells.append(_cell(html.escape(test_set_label(f["test_set"].iloc[i]))))
    cells.append(_cell(html.escape(f["row"].iloc[i]), None, "label", f["variant"].iloc[i]))
    return cells


def _label_headers(report: Report) -> list[str]:
    return (["Test set"] if "test_set" in report.frame else []) + ["Row"]


def _results_table(page: Page) -> str:
    """Ours beside the paper's for the columns the paper prints, one line per row."""
    report, f = page.report, page.report.frame
    columns = printed_columns(report)
    headers, tips = _label_headers(report), [""] * len(_label_headers(report))
    for col in columns:
        c = column(col)
        headers.append(c.header)
        tips.append(f"ours, {c.unit}")
        if f"paper_{col}" in f:
            headers.append(f"{c.header} (paper)")
            tips.append(f"as printed in the paper, {c.unit}")
    headers.append("Status")
    rows, classes = [], []
    for i in range(len(f)):
        cells = _row_cells(report, i)
        for col in columns:
            cells.append(_value(report, i, col))
            if f"paper_{col}" in f:
                cells.append(_paper_value(report, i, col))
        status, cls = _status(page, i)
        rows.append([*cells, status])
        classes.append(cls)
    return _table(headers, rows, classes, tips=tips)


def _costs_table(report: Report) -> str | None:
    """The columns the paper does not print and the spread (IQR) behind each time."""
    f = report.frame
    printed = printed_columns(report)
    shown = [c for c in report.spec.columns if c not in printed]
    spread = [c for c in report.spec.columns if f"{c}_iqr" in f]
    if not shown and not spread:
        return None
    headers = [
        *_label_headers(report),
        *(column(c).header for c in shown),
        *(f"{column(c).header}, IQR" for c in spread),
    ]
    tips = [""] * len(_label_headers(report)) + [column(c).unit for c in [*shown, *spread]]
    rows = []
    for i in range(len(f)):
        iqr = [f[f"{c}_iqr"].iloc[i] for c in spread]
        rows.append([
            *_row_cells(report, i),
            *(_value(report, i, c) for c in shown),
            *(_cell("–" if pd.isna(q) else html.escape(column(c).fmt.format(q)), q, "num")
              for c, q in zip(spread, iqr, strict=True)),
        ])  # fmt: skip
    return _table(headers, rows, tips=tips)


def _verdict_class(check: Check) -> str:
    return "not-evidence" if check.verdict == NOT_EVIDENCE else check.verdict.replace(" ", "-")


def _claims_table(report: Report) -> str:
    headers = ["Claim", "Paper's evidence", "Ours: estimate [95% CI] (n)", "Verdict",
               "What would decide it"]  # fmt: skip
    rows = []
    for check in report.checks:
        parts = "<br>".join(
            html.escape(f"{p.label}: {_estimate(p.estimate, check.claim.kind == 'ratio')}")
            for p in check.parts
        )
        rows.append([
            _cell(html.escape(check.claim.text), None, "text"),
            _cell(html.escape(check.claim.source), None, "text"),
            _cell(f"{parts or '–'}<span class=\"ci\">n = {check.n}</span>", check.n),
            _cell(f'<span class="verdict {_verdict_class(check)}">'
                  f"{html.escape(check.verdict_text())}</span>"),
            _cell(_inline(check.to_decide(report.spec.command_name, report.profile)) or "decided",
                  None, "text"),
        ])  # fmt: skip
    return _table(headers, rows)


def _estimate(x: Any, ratio: bool) -> str:
    fmt = "{:.3g}x" if ratio else "{:+.4g}"
    if x.n < 2:
        return fmt.format(x.mean) + " (no interval: 1 seed)"
    return f"{fmt.format(x.mean)} [{fmt.format(x.low)}, {fmt.format(x.high)}]"


def _protocol(report: Report) -> list[str]:
    """The protocol's fields, and the choices the paper leaves open that we made."""
    fields = {k: v for k, v in report.meta["protocol"].items() if k not in ("__type__", "choices")}
    items = "".join(
        f"<dt>{html.escape(k)}</dt><dd><code>{html.escape(json.dumps(v))}</code></dd>"
        for k, v in fields.items()
    )
    out = [f'<dl class="provenance">{items}</dl>']
    if choices := report.meta["protocol"].get("choices"):
        out += ["<h3>Chosen by us</h3>", f"<p>{_inline(choices)}</p>"]
    return out


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key != "__type__":
                out |= _flatten(item, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): value}


def provenance(report: Report) -> dict[str, str]:
    """Where, when and how the report's records were made, field by field, whatever fields
    the records hold (new ones appear as they are added): one value, a range of times or
    numbers, or the distinct values."""
    values: dict[str, list[Any]] = {}
    for record in report.records:
        flat = _flatten({k: v for k, v in record.items() if k not in _NOT_PROVENANCE})
        for key, value in flat.items():
            values.setdefault(key, []).append(value)
    out = {"records": str(len(report.records)), "runs folder": report.meta["runs_dir"]}
    for key in sorted(values):
        out[key] = _summarise(key, values[key])
    return out


def _summarise(key: str, values: list[Any]) -> str:
    distinct = list(
        dict.fromkeys(json.dumps(v) if isinstance(v, list | dict) else v for v in values)
    )
    if len(distinct) == 1:
        return str(distinct[0])
    numbers = [v for v in distinct if isinstance(v, int | float) and not isinstance(v, bool)]
    if key.endswith("_at") or len(numbers) == len(distinct):
        low, high = min(distinct), max(distinct)
        total = f"; total {sum(values):.4g}" if key.endswith("_s") else ""
        return f"{low} … {high} ({len(distinct)} values{total})"
    shown = ", ".join(str(v) for v in distinct[:_MAX_SHOWN])
    more = len(distinct) - _MAX_SHOWN
    return shown + (f", and {more} more" if more > 0 else "")


def _definitions(items: dict[str, str]) -> str:
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items.items())
    return f'<dl class="provenance">{rows}</dl>'


def _page(page: Page) -> str:
    report = page.report
    lines = header_lines(report)
    banners = [ln for ln in lines if ln.startswith(BANNERS)]
    body = [f'<p class="banner">{_inline(b)}</p>' for b in banners]
    body += ["<ul>", *(f"<li>{_inline(ln)}</li>" for ln in lines if ln not in banners), "</ul>"]
    body += ['<h2 id="results">Results</h2>', _results_table(page)]
    body.append(f'<p class="legend">{html.escape(PAPER_SOURCE)} Hover a header for its unit, '
                "a row for its variant; click a header to sort.</p>")  # fmt: skip
    if page.figure:
        pdf = page.figure.removesuffix(".png") + ".pdf"
        body.append(
            f'<figure><img src="{page.figure}" alt="{html.escape(report.spec.title)}: plot">'
            f'<figcaption class="muted">The table as a plot (<a href="{pdf}">PDF</a>).'
            "</figcaption></figure>"
        )
    if (costs := _costs_table(report)) is not None:
        body += [
            f"<h2>{html.escape(COSTS_TITLE)}</h2>",
            f'<p class="legend">{COSTS_LEGEND}</p>',
            costs,
        ]
    if (tests := baseline_frame(report)) is not None:
        body += ["<h2>Against the baseline</h2>", f'<p class="legend">{html.escape(BASELINE_LEGEND)}</p>',
                 _frame_table(tests)]  # fmt: skip
    body.append('<h2 id="claims">Claims</h2>')
    if report.checks:
        body += [f'<p class="legend">{_inline(CLAIMS_LEGEND)}</p>', _claims_table(report)]
    else:
        body.append("<p>This table carries no checkable claim of the paper.</p>")
    body += ['<h2 id="notes">Notes</h2>', "<ul>"]
    body += [f"<li>{_inline(n)}</li>" for n in [*conventions(report.spec), *report.spec.notes]]
    body += ["</ul>", "<h2>Protocol</h2>", *_protocol(report)]
    body += ['<h2 id="provenance">Provenance</h2>', _definitions(provenance(report))]
    return _document(title(report), body)


# --- the index -----------------------------------------------------------------------


def _claims_summary(checks: Sequence[Check]) -> str:
    counts: dict[str, int] = {}
    for check in checks:
        counts[check.verdict] = counts.get(check.verdict, 0) + 1
    return ", ".join(f"{n} {v}" for v, n in counts.items()) or "none"


def _index(pages: Sequence[Page], store: RunStore) -> str:
    headers = ["Table", "Profile", "Rows measured", "Records", "Failed cells", "Claims"]
    rows = []
    for page in pages:
        r, m = page.report, page.report.meta
        failed = sum(len(v) for v in page.failed.values())
        rows.append([
            _cell(f'<a href="{page.file}">{html.escape(title(r))}</a>', r.spec.name),
            _cell(html.escape(r.profile)),
            _cell(f"{m['rows_done']} of {m['rows']}", m["rows_done"], "num"),
            _cell(str(m["cells_done"]), m["cells_done"], "num"),
            _cell(str(failed), failed, "num"),
            _cell(html.escape(_claims_summary(r.checks))),
        ])  # fmt: skip
    claims = []
    for page in pages:
        for check in page.report.checks:
            claims.append([
                _cell(f'<a href="{page.file}#claims">{html.escape(page.report.spec.name)}</a>',
                      page.report.spec.name),
                _cell(html.escape(check.claim.text)),
                _cell(html.escape(check.measurement())),
                _cell(f'<span class="verdict {_verdict_class(check)}">'
                      f"{html.escape(check.verdict_text())}</span>"),
            ])  # fmt: skip
    empty = [p.report.spec.name for p in pages if nothing_ran(p.report)]
    body = [
        f'<p class="muted">Made {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the records under '
        f"<code>{html.escape(str(store.root))}</code>. Each page shows our numbers beside the "
        "paper's, the paper's claims checked, the plot, notes and provenance.</p>",
        "<h2>Tables</h2>",
        _table(headers, rows),
    ]
    if empty:
        body.append(f"<p>Nothing has run for: {html.escape(', '.join(empty))}.</p>")
    if claims:
        body += ["<h2>Claims</h2>", _table(["Table", "Claim", "Ours", "Verdict"], claims)]
    return _document("Feature Pooling (Pei et al. 2020): results", body, home=False)


__all__ = ["Page", "provenance", "write_site"]
