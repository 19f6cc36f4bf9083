"""Tracker export: TensorBoard event files and MLflow runs read back with the records' numbers.

The exports run on a copy of the golden smoke records (no training); the run hook is
checked on the toy regression table (two cells of a few milliseconds each).
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.task import get_task
from harness.render.results import results
from harness.run.runner import run_table
from harness.store import tracking
from harness.store.records import RunStore, read_json
from harness.store.tracking import EXPERIMENT, Tracking
from tests.test_toy_task import _spec, installed  # noqa: F401 (a fixture)

GOLDEN = Path(__file__).parent / "golden" / "runs"
TABLE = "table1"  # classification: a loss and a test accuracy at two points per epoch


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("tracking") / "runs"
    shutil.copytree(GOLDEN, target)
    return target


def _records(runs: Path) -> list[dict]:
    paths = results(TABLE, runs_dir=runs, profile="smoke")["record"]
    assert len(paths) == 7
    return [read_json(Path(p)) | {"_path": p} for p in paths]


def _history(record: dict, key: str) -> list[tuple[int, float]]:
    return [(h["step"], h[key]) for h in record["history"]]


def _same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    """Same steps, same values (TensorBoard keeps float32)."""
    return [s for s, _ in got] == [s for s, _ in want] and [v for _, v in got] == pytest.approx(
        [v for _, v in want], rel=1e-6
    )


def test_tensorboard_export_reads_back_as_the_records(runs: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    for _ in range(2):  # a second export replaces each cell's run instead of adding to it
        assert (
            main(["export", "tensorboard", TABLE, "--profile", "smoke", "--runs-dir", str(runs)])
            == 0
        )
    for record in _records(runs):
        c = record["config"]
        folder = runs / "_tensorboard" / TABLE / "smoke" / c["variant"] / f"seed{c['seed']}"
        assert len(list(folder.glob("events.out.tfevents.*"))) == 2  # scalars, hparams
        events = EventAccumulator(str(folder))
        events.Reload()
        for key in ("train_loss", "test_accuracy", "lr"):
            got = [(e.step, e.value) for e in events.Scalars(key)]
            assert _same(got, _history(record, key)), key
        times = [e.value for e in events.Scalars("epoch_time_s")]
        assert times == pytest.approx(record["epoch_times_s"])
        assert events.Scalars("final/accuracy")[0].value == pytest.approx(
            record["metrics"]["accuracy"]
        )
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        assert hparams["seed"].number_value == c["seed"]
        assert hparams["variant"].string_value == c["variant"]
        assert hparams["protocol.lr"].number_value == pytest.approx(c["protocol"]["lr"])


def test_mlflow_export_reads_back_as_the_records(runs: Path, tmp_path: Path, monkeypatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert main(["export", "mlflow", TABLE, "--profile", "smoke", "--runs-dir", str(runs)]) == 0
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=[EXPERIMENT])
    parents = found[found["tags.mlflow.parentRunId"].isna()]
    assert list(parents["tags.mlflow.runName"]) == [f"{TABLE} [smoke]"]
    cells = found[found["tags.mlflow.parentRunId"] == parents["run_id"].iloc[0]]
    by_record = cells.set_index("tags.harness.record")
    client = mlflow.tracking.MlflowClient(uri)
    records = _records(runs)
    assert len(cells) == len(records)
    for record in records:
        row = by_record.loc[record["_path"]]
        assert row["metrics.final/accuracy"] == pytest.approx(record["metrics"]["accuracy"])
        assert row["params.seed"] == str(record["config"]["seed"])
        assert row["params.variant"] == record["config"]["variant"]
        loss = client.get_metric_history(row["run_id"], "train_loss")
        assert _same(sorted((m.step, m.value) for m in loss), _history(record, "train_loss"))


def test_run_hook_logs_each_cell_as_it_finishes(installed, tmp_path: Path) -> None:  # noqa: F811
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec, store = _spec(), RunStore(tmp_path / "runs")
    track = Tracking("tensorboard", store.root)
    summary = run_table(spec, profile="smoke", seeds=1, device="cpu", store=store,
                        data_root=tmp_path / "data", log=lambda _: None, track=track)  # fmt: skip
    track.close()
    assert summary.ran == track.logged == 2
    for record in store.records(spec.name, "smoke"):
        c = record["config"]
        events = EventAccumulator(str(store.root / "_tensorboard" / tracking.cell_name(record)))
        events.Reload()
        got = [(e.step, e.value) for e in events.Scalars("loss")]
        assert _same(got, [(h["epoch"], h["loss"]) for h in record["history"]])
        assert events.Scalars("final/mse")[0].value == pytest.approx(record["metrics"]["mse"])
        assert c["variant"] in tracking.cell_name(record)


def test_an_unreachable_tracker_warns_once_and_the_run_goes_on(
    installed,  # noqa: F811
    tmp_path: Path,
    monkeypatch,
    capsys,
) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the discard port: refused
    spec, store = _spec(), RunStore(tmp_path / "runs")
    track = Tracking("mlflow", store.root)
    clock = time.perf_counter()
    summary = run_table(spec, profile="smoke", seeds=1, device="cpu", store=store,
                        data_root=tmp_path / "data", log=lambda _: None, track=track)  # fmt: skip
    track.close()
    assert summary.ran == 2 and summary.failed == 0
    assert track.failed and track.logged == 0
    assert time.perf_counter() - clock < 60
    warnings = [line for line in capsys.readouterr().err.splitlines() if "--track mlflow" in line]
    assert len(warnings) == 1, warnings


def test_a_missing_extra_is_one_line_and_exit_2_before_training(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))  # fmt: skip
    runs = tmp_path / "runs"
    code = main(["run", TABLE, "--profile", "smoke", "--runs-dir", str(runs), "--track", "mlflow",
                 "--out", str(tmp_path / "reports")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "pip install 'feature-pooling-harness[track]'" in err[0] and "mlflow" in err[0]
    assert not runs.exists()


def test_final_metrics_are_the_tasks_own() -> None:
    """Only metrics the task declares become ``final/`` values (no name is spelled here)."""
    record = read_json(next((GOLDEN / TABLE / "smoke").glob("*.json")))
    declared = [m.name for m in get_task("classification").metrics]
    finals = tracking.final_metrics(record | {"metrics": {**record["metrics"], "x": 1.0}}, declared)
    assert set(finals) == {f"final/{k}" for k in record["metrics"]}
