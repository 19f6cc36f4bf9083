import csv
import io
import json
import os
import signal
import time

import pytest
import torch

import harness.cli
import harness.tasks.classification.engine
from harness.cli import main
from harness.tables.paper import TABLE1
from registry import variant_info
from tests.fixtures import write_mnist_raw

PAPER_ORDER = [variant_info(v).paper_row("table1").row for v in TABLE1.rows]


def run_cli(*args: str) -> int:
    return main(list(args))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run of Table 1 shared by the tests that only read its outputs."""
    root = tmp_path_factory.mktemp("smoke")
    runs, out = root / "runs", root / "reports"
    assert (
        run_cli("run", "table1", "--profile", "smoke", "--runs-dir", str(runs), "--out", str(out))
        == 0
    )
    return runs, out


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_smoke_run_writes_records_and_reports(smoke):
    runs, out = smoke
    records = sorted((runs / "table1" / "smoke").glob("*.json"))
    assert len(records) == 7
    record = json.loads(records[0].read_text())
    assert record["status"] == "complete" and record["config"]["profile"] == "smoke"
    assert {"accuracy", "train_time_s", "test_time_s", "params", "flops"} <= set(record["metrics"])
    assert len(record["history"]) == 2 and "test_accuracy" in record["history"][0]
    assert record["env"]["torch"] == torch.__version__
    assert {p.name for p in out.iterdir()} == {"smoke"}
    assert {p.name for p in (out / "smoke").iterdir()} == {
        "table1.md",
        "table1.tex",
        "table1.csv",
        "figures",
    }

    rows = _csv_rows((out / "smoke" / "table1.csv").read_text())
    assert [r["row"] for r in rows] == PAPER_ORDER
    for column in ("accuracy", "train_time_s", "test_time_s", "params", "flops", "params_M_paper_conv",
                   "flops_paper_conv", "paper_accuracy", "paper_train_time_s", "paper_test_time_s",
                   "paper_params_M_paper_conv", "paper_flops_paper_conv", "n_seeds"):  # fmt: skip
        assert column in rows[0], column
    assert rows[0]["params"] == "12855498" and rows[0]["paper_accuracy"] == "0.9791"
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    markdown = (out / "smoke" / "table1.md").read_text()
    assert "Smoke run" in markdown and "s/epoch" in markdown
    assert "\\toprule" in (out / "smoke" / "table1.tex").read_text()


def test_second_run_trains_nothing_and_force_retrains(smoke, monkeypatch, capsys):
    runs, out = smoke
    before = {p: p.stat().st_mtime_ns for p in (runs / "table1" / "smoke").glob("*.json")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(harness.tasks.classification.engine, "train_classifier", no_training)
    assert (
        run_cli("run", "table1", "--profile", "smoke", "--runs-dir", str(runs), "--out", str(out))
        == 0
    )
    assert "7 already done, 0 to run" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in (runs / "table1" / "smoke").glob("*.json")}

    calls = []
    monkeypatch.undo()
    real = harness.tasks.classification.engine.train_classifier
    monkeypatch.setattr(
        harness.tasks.classification.engine,
        "train_classifier",
        lambda *a, **k: calls.append(1) or real(*a, **k),
    )
    assert (
        run_cli(
            "run",
            "table1",
            "--profile",
            "smoke",
            "--runs-dir",
            str(runs),
            "--out",
            str(out),
            "--force",
        )
        == 0
    )
    assert len(calls) == 7
    after = {p: p.stat().st_mtime_ns for p in (runs / "table1" / "smoke").glob("*.json")}
    assert after.keys() == before.keys() and all(after[p] != before[p] for p in before)


def test_seeds_repeat_exactly_and_several_seeds_give_spread(smoke, tmp_path, capsys):
    runs, _ = smoke
    first = _csv_rows(_report_csv(runs, capsys))
    assert run_cli("run", "table1", "--profile", "smoke", "--seeds", "2", "--runs-dir", str(runs),
                   "--out", str(tmp_path)) == 0  # fmt: skip
    rows = _csv_rows(_report_csv(runs, capsys))
    assert all(r["n_seeds"] == "2" for r in rows)
    assert "accuracy_std" in rows[0] and rows[0]["accuracy_std"] != ""
    # seed 0 was retrained by --force in another test: the CPU result must not move
    seed0 = [
        json.loads(p.read_text())["metrics"]["accuracy"]
        for p in sorted((runs / "table1" / "smoke").glob("*seed0-*.json"))
    ]
    assert len(seed0) == 7 and all(0 <= a <= 1 for a in seed0)
    assert [float(r["accuracy"]) for r in first] == pytest.approx(seed0_by_row(runs))


def seed0_by_row(runs):
    by_variant = {}
    for p in (runs / "table1" / "smoke").glob("*seed0-*.json"):
        record = json.loads(p.read_text())
        by_variant[record["config"]["variant"]] = record["metrics"]["accuracy"]
    return [by_variant[v] for v in TABLE1.rows]


def _report_csv(runs, capsys) -> str:
    capsys.readouterr()
    assert (
        run_cli(
            "report", "table1", "--profile", "smoke", "--format", "csv", "--runs-dir", str(runs)
        )
        == 0
    )
    return capsys.readouterr().out


def test_training_is_repeatable_on_cpu(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for runs in (a, b):
        assert (
            run_cli(
                "run", "table1", "--profile", "smoke", "--runs-dir", str(runs), "--out", str(runs)
            )
            == 0
        )
    for path in (a / "table1" / "smoke").glob("*.json"):
        ra = json.loads(path.read_text())
        rb = json.loads((b / "table1" / "smoke" / path.name).read_text())
        assert ra["metrics"]["accuracy"] == rb["metrics"]["accuracy"]
        assert [h["train_loss"] for h in ra["history"]] == [h["train_loss"] for h in rb["history"]]


def test_report_json_to_stdout(smoke, capsys):
    runs, _ = smoke
    capsys.readouterr()
    assert run_cli("report", "table1", "--format", "json", "--runs-dir", str(runs)) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["meta"]["profile"] == "smoke"  # the newest records' profile by default
    assert [r["row"] for r in payload["rows"]] == PAPER_ORDER


def test_paper_profile_through_torchvision_on_fixture(tmp_path):
    write_mnist_raw(tmp_path / "data", n_train=100, n_test=30)
    code = run_cli("run", "table1", "--data-root", str(tmp_path / "data"), "--runs-dir",
                   str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-download")  # fmt: skip
    assert code == 0
    records = [
        json.loads(p.read_text()) for p in (tmp_path / "runs" / "table1" / "paper").glob("*.json")
    ]
    assert len(records) == 7
    assert all(
        r["config"]["protocol"]["epochs"] == 5 and r["config"]["protocol"]["batch_size"] == 100
        for r in records
    )
    assert all(len(r["epoch_times_s"]) == 5 for r in records)
    assert "Demo run" not in (tmp_path / "out" / "paper" / "table1.md").read_text()


def test_plan_and_list(smoke, capsys):
    runs, _ = smoke
    assert run_cli("plan", "table1", "--profile", "smoke", "--runs-dir", str(runs)) == 0
    assert "7 of 7 cells done" in capsys.readouterr().out
    assert run_cli("plan", "table1", "--runs-dir", str(runs)) == 0
    assert "0 of 7 cells done" in capsys.readouterr().out
    assert run_cli("list") == 0
    listing = capsys.readouterr().out
    assert "table8" in listing and "profiles paper, demo, smoke" in listing
    assert "mnist.topk_s2" in listing and "classical.bm3d" in listing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "table9"],
            "unknown table 'table9'; did you mean 'table8'? (choose one of: table1",
        ),
        (["report", "tabel1"], "unknown table 'tabel1'; did you mean 'table1'?"),
        (["plan", "table1", "--profile", "smok"], "unknown profile 'smok'; did you mean 'smoke'?"),
        (["run", "table6", "--workers", "0"], "--workers must be 1 to"),
        (
            ["run", "table1", "--profile", "fast"],
            "unknown profile 'fast' (choose one of: paper, demo, smoke)",
        ),
        (["run", "table1", "--seeds", "0"], "--seeds must be 1 to"),
        (["run", "table1", "--seeds", "two"], "invalid int value"),
        (["run", "table1", "--device", "tpu"], "invalid choice"),
        (["report", "table1", "--format", "pdf"], "invalid choice"),
        (["plan", "nope"], "unknown table"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert run_cli(*args, *_isolated(args, tmp_path)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.md"))


def _isolated(args, tmp_path):
    if args[0] in ("run", "report", "plan") and len(args) > 1:
        extra = ["--runs-dir", str(tmp_path / "runs")]
        return extra + (["--out", str(tmp_path / "out")] if args[0] != "plan" else [])
    return []


def test_data_root_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert (
        run_cli(
            "run",
            "table1",
            "--data-root",
            str(tmp_path / "file"),
            "--runs-dir",
            str(tmp_path / "runs"),
        )
        == 2
    )
    assert "is not a directory" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.json"))


def test_missing_data_offline(tmp_path, capsys):
    code = run_cli("run", "table1", "--data-root", str(tmp_path / "nodata"), "--runs-dir", str(tmp_path / "runs"),
                   "--out", str(tmp_path / "out"), "--no-download")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "MNIST is not under" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.rglob("*.json"))


def test_unwritable_folders(tmp_path, capsys):
    assert run_cli("run", "table1", "--profile", "smoke", "--runs-dir", "/proc/harness-runs") == 2
    assert "--runs-dir /proc/harness-runs is not writable" in capsys.readouterr().err
    code = run_cli(
        "run", "table1", "--data-root", "/proc/harness-data", "--runs-dir", str(tmp_path / "runs")
    )
    assert code == 2 and "--data-root /proc/harness-data is not writable" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_runs_dir(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    assert run_cli("run", "table1", "--profile", "smoke", "--runs-dir", str(ro)) == 2
    assert "not writable" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_requested_without_gpu(tmp_path, capsys):
    assert (
        run_cli(
            "run", "table1", "--profile", "smoke", "--device", "cuda", "--runs-dir", str(tmp_path)
        )
        == 2
    )
    assert "no CUDA GPU" in capsys.readouterr().err


def _swallowing_sigterm(then: Exception | None = None):
    """A command during which SIGTERM arrives and its Terminated is swallowed, as a
    library's bare ``except:`` would (then, perhaps, an error the interruption caused)."""

    def command(_args) -> int:
        try:
            signal.raise_signal(signal.SIGTERM)
            time.sleep(5)  # the handler runs before this returns
        except BaseException:
            pass
        if then is not None:
            raise then
        return 1  # as if the cell it interrupted had been recorded as failed

    return command


@pytest.mark.parametrize("then", [None, AttributeError("partially initialized module")])
def test_a_sigterm_something_swallowed_still_ends_the_run_with_143(monkeypatch, capsys, then):
    monkeypatch.setitem(harness.cli.COMMANDS, "list", _swallowing_sigterm(then))
    assert main(["list"]) == 143
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.setitem(harness.cli.COMMANDS, "list", lambda _args: 0)
    assert main(["list"]) == 0  # the next call starts afresh
