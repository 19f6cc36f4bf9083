import json
import math
import shutil
import struct

import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.core.errors import UserError
from harness.render.figures import Source, fig4, table_plot
from harness.render.plotstyle import render
from harness.render.report import Report
from harness.store.records import RunStore
from harness.tables.cells import cell_config
from harness.tables.paper import TABLE1, TableSpec

ALL = ("fig1", "fig2", "fig4", "fig5", "fig6", "table1")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run of Table 1 (records and weights) and its reports."""
    root = tmp_path_factory.mktemp("figures")
    runs, reports = root / "runs", root / "reports"
    assert main(["run", "table1", "--profile", "smoke", "--runs-dir", str(runs),
                 "--out", str(reports)]) == 0  # fmt: skip
    return runs, reports


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_every_figure_renders_from_smoke_records(smoke, tmp_path, capsys):
    runs, _ = smoke
    assert main(["figures", "--runs-dir", str(runs), "--out", str(tmp_path)]) == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith(
        tuple(f"skipped {name}:" for name in ALL))]  # fmt: skip
    for name in ALL:
        width, height = png_size(tmp_path / f"{name}.png")
        assert 500 <= width <= 2000 and 300 <= height <= 2000, (name, width, height)
        assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_figures_keeps_a_table_plot_whose_records_are_unchanged(records_only, tmp_path, capsys):
    """The second ``figures table1`` finds the same rows and keeps the plot (drawing takes
    a second or more); a record that changed has it drawn again."""
    figures = ["figures", "table1", "--runs-dir", str(records_only), "--out", str(tmp_path)]
    assert main(figures) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {tmp_path / 'table1.png'}", f"wrote {tmp_path / 'table1.pdf'}"
    ]  # fmt: skip
    assert main(figures) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"kept {tmp_path / 'table1.png'} (inputs unchanged)",
        f"kept {tmp_path / 'table1.pdf'} (inputs unchanged)",
    ]
    path = next((records_only / "table1" / "smoke").glob("mnist.topk_s2-*.json"))
    record = json.loads(path.read_text())
    record["metrics"]["accuracy"] = 0.5 if record["metrics"]["accuracy"] != 0.5 else 0.25
    path.write_text(json.dumps(record))
    assert main(figures) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"wrote {tmp_path / 'table1.png'}"


def test_figures_keeps_the_plot_that_report_drew_from_the_same_records(records_only, tmp_path):
    """``run`` and ``report`` draw a table's plot beside its Markdown; ``figures`` into that
    folder afterwards finds it drawn from the same rows and keeps it."""
    source = ["table1", "--runs-dir", str(records_only)]
    assert main(["report", *source, "--out", str(tmp_path)]) == 0
    folder = tmp_path / "smoke" / "figures"
    drawn = (folder / "table1.png").stat().st_mtime_ns
    assert main(["figures", *source, "--out", str(folder)]) == 0
    assert (folder / "table1.png").stat().st_mtime_ns == drawn


def test_smoke_figures_say_so(smoke):
    runs, _ = smoke
    fig, note = fig4(Source(RunStore(runs), "smoke", runs / "unused"))
    assert note.startswith("Smoke run") and len(fig.axes[0].lines) == 3


def test_reports_embed_the_table_plot(smoke):
    _, reports = smoke
    assert "![Table 1" in (reports / "smoke" / "table1.md").read_text()
    assert "](figures/table1.png)" in (reports / "smoke" / "table1.md").read_text()
    assert png_size(reports / "smoke" / "figures" / "table1.png")[0] > 500
    assert (reports / "smoke" / "figures" / "table1.pdf").is_file()


@pytest.fixture
def records_only(smoke, tmp_path):
    """A copy of the smoke records without their weights, free to damage (records that
    list their weights' digests would be stale without them: those lists are dropped, as
    in records made before they were written)."""
    runs = tmp_path / "runs"
    shutil.copytree(smoke[0], runs, ignore=shutil.ignore_patterns("*.pt"))
    for path in runs.glob("*/*/*.json"):
        record = json.loads(path.read_text())
        if record.pop("files", None) is not None:
            path.write_text(json.dumps(record))
    return runs


def test_record_without_history_is_one_line(records_only, tmp_path, capsys):
    path = next((records_only / "table1" / "smoke").glob("mnist.topk_s2-*.json"))
    record = json.loads(path.read_text())
    del record["history"]
    path.write_text(json.dumps(record))
    out = tmp_path / "out"
    assert main(["figures", "fig4", "--runs-dir", str(records_only), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "has no training history" in err and "--force" in err and err.count("\n") == 1
    assert not list(out.glob("fig4.*"))
    # with no names, what cannot be drawn is skipped with its reason
    assert main(["figures", "--runs-dir", str(records_only), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped fig4: the mnist.topk_s2 seed 0 record" in printed
    assert "skipped fig5:" in printed and "is missing" in printed  # weights not copied
    assert (out / "fig2.png").is_file() and (out / "table1.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["figures", "fig3"],
            "unknown figure 'fig3'; did you mean 'fig6'? (choose one of: fig1, fig2, fig4",
        ),
        (["figures", "fig4", "--profile", "fast"], "unknown profile 'fast'"),
        (["figures", "fig4"], "no paper record of mnist.baseline"),
    ],
)
def test_bad_figure_requests(args, message, tmp_path, capsys):
    assert main([*args, "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("*.png"))


def _weights_record(tmp_path):
    store = RunStore(tmp_path)
    config = cell_config(TABLE1, "mnist.conv_s4", "smoke", 0)
    return store, config


def test_weights_round_trip(tmp_path):
    store, config = _weights_record(tmp_path)
    state = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3)).state_dict()
    path = store.save_weights(config, state)
    assert path.suffix == ".pt" and path.with_suffix(".json") == store.path(config)
    loaded = store.load_weights({"config": config, "weights": path.name})
    assert loaded.keys() == state.keys()
    assert all(
        torch.equal(loaded[k], state[k]) and loaded[k].dtype == state[k].dtype for k in state
    )
    with pytest.raises(UserError, match="no saved weights"):
        store.load_weights({"config": config})


class _Payload:
    """Unpickling this would create a file: what a weights-only loader must refuse."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_malicious_weights_are_refused(tmp_path, container):
    store, config = _weights_record(tmp_path)
    path = store.path(config).with_suffix(".pt")
    path.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    if container == "torch.save":
        torch.save({"weight": _Payload(marker)}, path)
    else:
        import pickle

        path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UserError, match="refusing to load") as err:
        store.load_weights({"config": config, "weights": path.name})
    assert "\n" not in str(err.value) and not marker.exists()


def _report(frame):
    spec = TableSpec(name="tablex", title="Table X: synthetic")
    meta = {"cells_done": 2, "measured_on": ["test CPU"], "profile": "paper"}
    return Report(spec, "paper", pd.DataFrame(frame), meta)


def test_rows_against_accuracy_and_parameters_on_a_synthetic_frame(tmp_path):
    report = _report({
        "row": ["Baseline", "Baseline+FP4", "top-k (not in the paper)"],
        "variant": ["mnist.baseline", "mnist.fp_max_s4", "mnist.topk_s2"],
        "accuracy": [0.93, math.nan, 0.931],  # a row not run yet, a row not in the paper
        "paper_accuracy": [0.9325, 0.9367, math.nan],
        "params": [14_743_626, 12_970_000, 13_000_000],
        "params_M_paper_conv": [14.06, 12.37, 12.40],
        "paper_params_M_paper_conv": [14.06, 12.37, math.nan],
    })  # fmt: skip
    fig, note = table_plot(report)
    accuracy, params = [ax for ax in fig.axes if ax.axison]  # one panel per column
    assert "accuracy" in accuracy.get_xlabel() and params.get_xlabel().startswith("parameters")
    assert [t.get_text() for t in accuracy.get_yticklabels()] == [
        "Baseline",
        "Baseline+FP4",
        "top-k (not in the paper)",
    ]
    # ours filled where measured (2 rows), the paper's hollow where printed (2 rows)
    assert len(accuracy.lines) == 4 and "Pei et al." in note
    paths = render(lambda: table_plot(report), tmp_path, "tablex")
    assert [p.name for p in paths] == ["tablex.png", "tablex.pdf"]


def test_psnr_against_sigma_on_a_synthetic_frame(tmp_path):
    report = _report({
        "row": ["BM3D", "Baseline+2FP"],
        "variant": ["bm3d", "mnist.fp_max_s2"],
        "psnr_sigma15": [math.nan, 32.1],
        "psnr_sigma25": [29.0, 29.8],
        "paper_psnr_sigma15": [31.46, 32.53],
        "paper_psnr_sigma25": [29.02, 29.75],
        "paper_psnr_sigma50": [26.10, 26.55],
    })  # fmt: skip
    fig, _ = table_plot(report)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "noise level σ" and list(ax.get_xticks()) == [15, 25, 50]
    styles = sorted(line.get_linestyle() for line in ax.lines)
    assert styles == ["-", "-", "--", "--"]  # ours solid, the paper's dashed, per row
    assert png_size(render(lambda: table_plot(report), tmp_path, "psnr")[0])[0] > 500
