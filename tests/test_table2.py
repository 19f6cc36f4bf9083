"""Tables 2-3 end to end on CIFAR-10-layout fixtures, through the CLI."""

import csv
import io
import json
import math
from dataclasses import replace

import pytest
import torch

from harness.cli import main
from harness.core.runtime import Runtime
from harness.data.cifar import MEAN, STD
from harness.data.classification import ClassificationData
from harness.tables.paper import TABLES
from harness.tasks.classification.engine import train_classifier
from registry import create_model, printed_value, variant_info
from tests.fixtures import write_cifar10_fixture

ROWS = TABLES["table2"].rows


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("table2")
    write_cifar10_fixture(root / "data", n_train=16, n_test=8)
    args = ["run", "table2", "--profile", "smoke", "--device", "cpu", "--data-root",
            str(root / "data"), "--runs-dir", str(root / "runs"), "--out", str(root / "out")]  # fmt: skip
    assert main(args) == 0
    return root


def test_csv_has_every_row_in_the_papers_order(smoke):
    rows = list(csv.DictReader(io.StringIO((smoke / "out" / "smoke" / "table2.csv").read_text())))
    paper = [variant_info(v).paper_row("table2") for v in ROWS]
    assert [r["row"] for r in rows[:10]] == [p.row for p in paper[:10]]
    assert all(r["row"].endswith("(not in the paper)") for r in rows[10:])
    assert [r["variant"] for r in rows] == list(ROWS)
    assert rows[0]["params"] == "14743626" and rows[0]["paper_accuracy"] == "0.9325"
    for row, p in zip(rows[:10], paper[:10], strict=True):
        for column in ("params_M_paper_conv", "flops_paper_conv"):
            printed, unit = printed_value(p.values[column])
            assert abs(float(row[column]) - printed) <= unit * 1.0001
            assert float(row[f"paper_{column}"]) == pytest.approx(printed)
    assert all(r["n_seeds"] == "1" and 0 <= float(r["accuracy"]) <= 1 for r in rows)
    assert rows[10]["paper_accuracy"] == ""
    markdown = (smoke / "out" / "smoke" / "table2.md").read_text()
    assert "Smoke run" in markdown and "Weight decay is not stated in the paper" in markdown
    assert "fp32, channels_last" in markdown


def test_records_hold_protocol_runtime_and_epoch_times(smoke):
    records = [
        json.loads(p.read_text()) for p in (smoke / "runs" / "table2" / "smoke").glob("*.json")
    ]
    assert len(records) == len(ROWS) == 20
    record = records[0]
    protocol = record["config"]["protocol"]
    assert (protocol["crop_padding"], protocol["hflip"], protocol["batch_size"]) == (4, True, 8)
    assert record["runtime"]["amp"] == "off" and record["runtime"]["compile"] is False
    assert len(record["epoch_times_s"]) == 1 and record["metrics"]["train_time_s"] > 0
    assert "cifar10-fixture" in record["data"] and "md5 check off" in record["data"]


def test_paper_protocol_as_stated():
    paper = TABLES["table3"].protocol("paper")
    assert (paper.dataset, paper.epochs, paper.batch_size) == ("cifar10", 180, 250)
    assert paper.optimizer == "sgd"
    assert (paper.lr, paper.momentum, paper.weight_decay) == (0.1, 0.9, 5e-4)
    assert paper.lr_steps == ((80, 0.01), (120, 0.001), (150, 0.0005))
    assert "5e-4" in paper.choices
    assert "not comparable" in TABLES["table2"].protocol("demo").choices


def test_plan_uses_the_tables_image_shape(smoke, capsys):
    assert main(["plan", "table3", "--profile", "smoke", "--runs-dir", str(smoke / "runs")]) == 0
    out = capsys.readouterr().out
    assert "0 of 20 cells done" in out and "Baseline+5FP" in out


def test_missing_cifar_offline_is_one_line(tmp_path, capsys):
    code = main(["run", "table2", "--data-root", str(tmp_path / "none"), "--no-download",
                 "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "CIFAR-10 is not under" in err and err.count("\n") == 1
    assert not list(tmp_path.rglob("*.json")) and not (tmp_path / "out").exists()


def test_bad_amp_is_one_line(tmp_path, capsys):
    assert main(["run", "table2", "--amp", "fp8", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'fp8'" in err and err.count("\n") == 1


def test_bf16_autocast_path_trains_on_cpu():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (24,), generator=gen)
    data = ClassificationData(x[:16], y[:16], x[16:], y[16:], "random", MEAN, STD)
    protocol = replace(TABLES["table2"].protocol("smoke"), train_limit=None, test_limit=None)
    model = create_model("vgg16.at5_fp_max_s4")
    result = train_classifier(
        model, data, protocol, seed=0, device=torch.device("cpu"), runtime=Runtime(amp="bf16")
    )
    assert math.isfinite(result.history[-1]["train_loss"]) and len(result.epoch_times_s) == 1
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert Runtime(amp="bf16", compile=True).label == "bf16 autocast, compiled, channels_last"
    with pytest.raises(ValueError, match="unknown amp mode 'fp8'"):
        Runtime(amp="fp8")
