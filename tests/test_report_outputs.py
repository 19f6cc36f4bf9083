"""Reports a researcher can trust: one output set per profile, an architecture-only
report when nothing has run (never over measured rows), times from the run they sit in."""

from dataclasses import replace

import pandas as pd
import pytest
import torch

import harness.tasks.denoising.engine
from harness.cli import main
from harness.render.report import _timing_warnings, build_report
from harness.run.runner import run_table
from harness.store.records import SCHEMA, RunStore
from harness.tables.paper import TABLE6, TABLE8

CPU = torch.device("cpu")


@pytest.mark.slow  # counts the FLOPs of three full-width denoisers
def test_report_of_a_table_never_run_shows_the_architecture_columns(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["report", "table5", "--profile", "paper", "--runs-dir", str(tmp_path / "runs"),
                 "--out", str(out)]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no paper records of table5" in err
    frame = pd.read_csv(out / "paper" / "table5.csv")
    for column in ("params", "params_M_paper_conv", "flops", "flops_paper_conv"):
        assert frame[column].notna().all() and (frame[column] > 0).all(), column
        assert f"{column}_std" not in frame
    assert frame["psnr_sigma20"].isna().all() and (frame["n_seeds"] == 0).all()
    assert frame["params"].iloc[0] > 3 * frame["params"].iloc[1]  # FP shrinks the model
    assert frame["paper_params_M_paper_conv"].notna().all()  # the paper's beside ours
    markdown = (out / "paper" / "table5.md").read_text()
    assert "**Nothing has run**" in markdown and "](figures/table5.png)" in markdown
    assert (out / "paper" / "figures" / "table5.png").is_file()


def test_no_records_never_overwrite_a_measured_report(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "out"
    config = {"table": "table1", "variant": "mnist.baseline", "profile": "demo", "seed": 0}
    RunStore(runs).save({"status": "complete", "schema": SCHEMA, "config": config,  # another profile
                         "metrics": {}, "wall_s": 1.0, "env": {}, "data": "digits"})  # fmt: skip
    measured = out / "smoke"
    measured.mkdir(parents=True)
    (measured / "table1.md").write_text("# Table 1\n\n| Row | Accuracy |\n| Baseline | 0.97 |\n")
    (measured / "table1.csv").write_text("row,accuracy,n_seeds\nBaseline,0.97,1\n")
    before = {p.name: p.read_text() for p in measured.iterdir()}
    assert main(["report", "table1", "--profile", "smoke", "--runs-dir", str(runs),
                 "--out", str(out)]) == 0  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("note: no smoke records of table1") and "profile demo" in err[0]
    assert any(line.startswith(f"kept {measured / 'table1.md'}") for line in err)
    assert {p.name: p.read_text() for p in measured.iterdir() if p.is_file()} == before | {
        "table1.tex": (measured / "table1.tex").read_text()  # absent before: written
    }
    assert not (measured / "figures").exists()  # the measured report's plot is not replaced


def test_a_reused_model_has_its_training_time_measured_in_this_run(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    kwargs = dict(profile="smoke", seeds=1, device=CPU, store=store, data_root=tmp_path,
                  log=lambda _: None)  # fmt: skip
    run_table(replace(TABLE6, rows=("denoiser.fp2",), sigmas=(20,)), **kwargs)
    # a table that reports training time, reusing Table 6's model
    timed = replace(TABLE8, rows=("denoiser.fp2",), sigmas=(20,),
                    columns=(*TABLE8.columns, "train_time_s"))  # fmt: skip
    calls = []
    real = harness.tasks.denoising.engine.train_denoiser
    monkeypatch.setattr(harness.tasks.denoising.engine, "train_denoiser",
                        lambda model, *a, **k: calls.append(model) or real(model, *a, **k))  # fmt: skip
    run_table(timed, **kwargs)
    [first] = store.records("table6", "smoke")
    [second] = store.records("table8", "smoke")
    assert len(calls) == 1  # timed on a copy: the reused weights are tested unchanged
    assert second["metrics"]["psnr"] == pytest.approx(first["metrics"]["psnr"])
    assert second["epoch_times_s"] and second["epoch_times_s"] != first["epoch_times_s"]
    assert any("re-measured in this run" in n for n in second["notes"])
    assert second["env"]["run"] == first["env"]["run"]  # one invocation, one run id
    report = build_report(timed, "smoke", store)
    assert "train_time_s_iqr" in report.frame


def _timed(row, epochs, run="r1", **extra):
    return {"config": {"row": row}, "epoch_times_s": epochs, "env": {"run": run}, **extra}


def test_time_columns_are_flagged_when_they_cannot_be_compared():
    frame = pd.DataFrame({"row": ["A", "B"], "train_time_s": [1.0, 1.0],
                          "train_time_s_iqr": [0.1, 0.6]})  # fmt: skip
    calm = [_timed("A", [1.0, 1.0], contention=1), _timed("B", [1.0, 1.0], contention=1)]
    assert _timing_warnings(frame.assign(train_time_s_iqr=[0.1, 0.1]), calm, ["train_time_s"]) == []
    warnings = " | ".join(_timing_warnings(frame, calm, ["train_time_s"]))
    assert "more than 10%" in warnings and "for B" in warnings  # bench's noisy threshold
    busy = [_timed("A", [1.0], contention=3), _timed("B", [1.0], run="r2", contention=1)]
    warnings = " | ".join(_timing_warnings(frame, busy, ["train_time_s"]))
    assert "other cells shared the device: A" in warnings and "2 separate runs" in warnings
    assert "not recorded" in " ".join(
        _timing_warnings(frame, [_timed("A", [1.0])], ["train_time_s"])
    )


def test_a_time_from_one_epoch_says_its_spread_is_unknown():
    frame = pd.DataFrame({"row": ["A"], "train_time_s": [1.0], "train_time_s_iqr": [float("nan")]})
    warnings = _timing_warnings(frame, [_timed("A", [1.0], contention=1)], ["train_time_s"])
    assert warnings == ["train time rests on a single epoch for every row: its spread is unknown"]


def test_plan_prices_each_trained_model_once_and_classical_methods_per_image(tmp_path):
    from types import MappingProxyType

    from harness.run.runner import table_cells
    from harness.tables.costs import Plan, training_shape

    smoke = replace(TABLE6.protocol("smoke"), test_set=("bsd500", "tid2008"))
    spec = replace(TABLE6, rows=("classical.ksvd", "denoiser.fp2"), sigmas=(20,),
                   protocols=MappingProxyType({"smoke": smoke}))  # fmt: skip
    plan, store = Plan(), RunStore(tmp_path)
    states = [
        plan.price(spec, c, store, training_shape(spec, "smoke"))
        for c in table_cells(spec, "smoke", 1)
    ]
    ksvd_bsd, fp2_bsd, ksvd_tid, fp2_tid = states
    assert "TFLOP" in fp2_bsd and "test only" in fp2_tid  # one model serves both test sets
    assert "500 images" in ksvd_bsd and "25 images" in ksvd_tid and plan.classical_s > 0
