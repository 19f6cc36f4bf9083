"""Table plots read at 20 rows: no text overlaps another or leaves the figure, the axes
hold the paper's points, denoising plots draw the noisy input. Checked on the text
extents the Agg renderer computes."""

import itertools
import math

import matplotlib
import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.text import Text

from harness.render import site
from harness.render.figures import table_plot
from harness.render.plotstyle import STYLE, render
from harness.render.report import Report
from harness.tables.paper import TABLES
from registry import variant_info


def _report(name: str, **columns) -> Report:
    spec = TABLES[name]
    rows = [spec.row_label(v) for v in spec.rows]
    frame = pd.DataFrame({"row": rows, "variant": list(spec.rows), **columns})
    meta = {"cells_done": len(rows), "measured_on": ["test CPU"], "profile": "smoke"}
    return Report(spec, "smoke", frame, meta)


def _paper(name: str, column: str) -> list[float]:
    spec = TABLES[name]
    rows = [variant_info(v).paper_row(name) for v in spec.rows]
    return [r.number(column) if r and column in r.values else math.nan for r in rows]


def _texts(fig) -> list[Text]:
    """Every text a drawn figure shows (tick labels only for ticks inside the view)."""
    fig.canvas.draw()
    hidden = set()
    for ax in fig.findobj(Axes):
        for axis in (ax.xaxis, ax.yaxis):
            ticks = axis.get_major_ticks() + axis.get_minor_ticks()
            # matplotlib's own choice of ticks to draw (none where the axes are switched off)
            drawn = set(axis._update_ticks()) if ax.axison else set()
            hidden |= {id(t.label1) for t in ticks if t not in drawn}
            hidden |= {id(t.label2) for t in ticks if t not in drawn}
    return [t for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and id(t) not in hidden]  # fmt: skip


def assert_readable(fig) -> None:
    """No two texts overlap or touch, and none leaves the figure."""
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]
    page = fig.bbox
    for text, box in boxes:
        assert box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1, f"{text!r} leaves the figure"
        assert box.y0 >= page.y0 - 1 and box.y1 <= page.y1 + 1, f"{text!r} leaves the figure"
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        overlap_w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        overlap_h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        assert overlap_w < -1 or overlap_h < -1, f"{a!r} touches {b!r}"  # a pixel apart


def _panels(fig) -> list[Axes]:
    """The figure's axes that show data (subfigures' included, the legend row left out)."""
    return [ax for ax in fig.findobj(Axes) if ax.axison]


def _drawn(report: Report):
    with matplotlib.rc_context(STYLE):
        fig, _ = table_plot(report)
        assert_readable(fig)
    return fig


def test_twenty_rows_of_table2_never_overlap():
    n = len(TABLES["table2"].rows)
    assert n == 20
    rng = np.random.default_rng(0)
    fig = _drawn(_report(
        "table2", accuracy=0.9 + rng.normal(0, 0.003, n), paper_accuracy=_paper("table2", "accuracy"),
        params_M_paper_conv=_paper("table2", "params_M_paper_conv"),
        paper_params_M_paper_conv=_paper("table2", "params_M_paper_conv"),
        train_time_s=rng.uniform(1, 2, n), test_time_s=rng.uniform(0.1, 0.2, n),
    ))  # fmt: skip
    labels = [t.get_text().replace("\n", " ") for t in _panels(fig)[0].get_yticklabels()]
    assert labels == [TABLES["table2"].row_label(v) for v in TABLES["table2"].rows]


def test_the_paper_point_is_inside_the_imagenet_axes():
    n = len(TABLES["imagenet"].rows)
    paper = _paper("imagenet", "top1")
    assert any(p > 0.7 for p in paper)  # the paper's 71.4%
    fig = _drawn(_report(
        "imagenet", top1=[0.33] * n, paper_top1=paper, top5=[1.0] * n,
        paper_top5=_paper("imagenet", "top5"), params_M_paper_conv=[24.373, 24.295, 24.061][:n],  # a real smoke run
        train_time_s=[122.0, 126.0, 166.0][:n], test_time_s=[4.4, 10.4, 11.6][:n],
    ))  # fmt: skip
    top1 = next(ax for ax in _panels(fig) if ax.get_xlabel().startswith("top-1"))
    low, high = top1.get_xlim()
    assert low <= 33 and high >= max(p * 100 for p in paper if not math.isnan(p))


def test_table1_plot_shows_accuracy_and_times():
    n = len(TABLES["table1"].rows)
    fig = _drawn(_report(
        "table1", accuracy=[0.97] * n, paper_accuracy=_paper("table1", "accuracy"),
        train_time_s=[3.0] * n, paper_train_time_s=_paper("table1", "train_time_s"),
        test_time_s=[0.2] * n, paper_test_time_s=_paper("table1", "test_time_s"),
        params_M_paper_conv=_paper("table1", "params_M_paper_conv"),
    ))  # fmt: skip
    xlabels = " | ".join(ax.get_xlabel() for ax in _panels(fig))
    assert "accuracy" in xlabels and "train time" in xlabels and "test time" in xlabels


@pytest.mark.parametrize("table", ["table4", "table5", "table6"])
def test_denoising_plots_draw_the_noisy_input(table):
    spec = TABLES[table]
    columns = {}
    for s in spec.sigmas:
        columns[f"psnr_sigma{s}"] = [30.0 - s / 10] * len(spec.rows)
        columns[f"noisy_psnr_sigma{s}"] = [20 * math.log10(255 / s)] * len(spec.rows)
    if "train_time_s" in spec.columns:
        columns |= {"train_time_s": [2.0, 1.0, 1.5], "test_time_s": [0.1, 0.05, 0.07],
                    "paper_train_time_s": _paper(table, "train_time_s")}  # fmt: skip
    fig = _drawn(_report(table, **columns))
    psnr = next(ax for ax in _panels(fig) if ax.get_ylabel() == "PSNR (dB)")
    assert "noisy input" in [t.get_text() for t in psnr.get_legend().get_texts()]
    noisy = [line for line in psnr.lines if line.get_linestyle() == ":"]
    assert len(noisy) == 1 and list(noisy[0].get_xdata()) == list(spec.sigmas)
    if "train_time_s" in spec.columns:
        assert any("train time" in ax.get_xlabel() for ax in _panels(fig))


def _line(calls: list[int]):
    def draw():
        calls.append(1)
        fig = matplotlib.figure.Figure()
        fig.add_subplot().plot([0, 1], [1, 0])
        return fig, ""

    return draw


def test_a_plot_drawn_again_later_is_the_same_file(tmp_path, monkeypatch):
    """The PDF carries no date: the same drawing gives the same bytes in any folder, at
    any time (matplotlib would otherwise stamp it, here with SOURCE_DATE_EPOCH)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    first = render(_line([]), tmp_path / "a", "plot")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "2000000000")
    again = render(_line([]), tmp_path / "b", "plot")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]


def test_the_site_keeps_a_plot_drawn_from_the_same_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    n = len(TABLES["table1"].rows)
    report = _report("table1", accuracy=[0.97] * n, train_time_s=[3.0] * n)
    calls: list[int] = []
    monkeypatch.setattr(site, "table_plot", lambda _: _line(calls)())
    for _ in range(2):
        assert site._draw_plot(report, tmp_path / "site", "table1") == "figures/table1.png"
    assert len(calls) == 1
    report.frame.loc[0, "accuracy"] = 0.5  # another value: drawn again
    site._draw_plot(report, tmp_path / "site", "table1")
    assert len(calls) == 2
