"""ResNet-50 variants, the imagenet table on a fixture ImageFolder, resume, torchrun DDP."""

import csv
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import resnet50

import harness.tasks.folders.engine as imagenet
from harness.cli import main
from harness.core.runtime import Runtime
from harness.data.imagenet import open_folders
from harness.store.records import RunStore
from harness.tables.paper import TABLES
from harness.train.measure import count_params
from registry import Reduction, create_model
from tests.fixtures import write_image_folder

SPEC = TABLES["imagenet"]
REPO = Path(__file__).resolve().parents[1]


def test_resnet50_variants_shapes_and_counts():
    base, fp = create_model("resnet50.baseline"), create_model("resnet50.fp_max_s2")
    assert count_params(base) == count_params(resnet50(weights=None)) == 25_557_032
    # layer2's first block: 1x1 conv 128 (not 256) -> 128, projection 128 (not 256) -> 512
    assert count_params(fp) == 25_557_032 - 128 * 128 - 256 * 512 + 128 * 512 == 25_475_112
    assert count_params(create_model("resnet50.at3_fp_max_s2")) == 25_229_352
    assert fp.layer2[0].conv1.in_channels == fp.layer2[0].downsample[0].in_channels == 128
    x = torch.randn(2, 3, 32, 32)
    assert fp.layer1(fp.maxpool(fp.relu(fp.bn1(fp.conv1(x))))).shape == (2, 128, 8, 8)
    assert fp(x).shape == base(x).shape == (2, 1000)
    with pytest.raises(ValueError, match="conv1x1"):
        create_model("resnet50", reductions={2: Reduction("conv", 2)})
    with pytest.raises(ValueError, match="position 4"):
        create_model("resnet50", reductions={4: Reduction("fp_max", 2)})


def test_paper_protocol_as_stated():
    p = SPEC.protocol("paper")
    assert (p.batch_size, p.optimizer, p.lr, p.momentum) == (64, "rmsprop", 0.1, 0.9)
    assert dict(p.optimizer_options) == {"alpha": 0.9, "eps": 1.0}
    assert p.lr_steps[0] == (2, pytest.approx(0.094)) and p.lr_steps[1][0] == 4
    assert all(lr >= 1e-4 for _, lr in p.lr_steps) and "90 epochs" in p.choices


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    write_image_folder(root / "data")
    args = ["run", "imagenet", "--profile", "smoke", "--device", "cpu", "--data-root",
            str(root / "data"), "--runs-dir", str(root / "runs"), "--out", str(root / "out")]  # fmt: skip
    assert main(args) == 0
    return root


def test_smoke_table_has_paper_rows_and_columns(smoke):
    rows = list(csv.DictReader((smoke / "out" / "smoke" / "imagenet.csv").open()))
    assert [r["row"] for r in rows[:2]] == ["Baseline", "Baseline+FP"]
    assert rows[2]["row"].endswith("(not in the paper)")
    assert rows[0]["params"] == "25557032" and rows[1]["params"] == "25475112"
    assert float(rows[0]["paper_top1"]) == pytest.approx(0.71434)
    assert float(rows[1]["paper_top5"]) == pytest.approx(0.89756)
    assert all(0 <= float(r["top1"]) <= float(r["top5"]) <= 1 for r in rows)
    markdown = (smoke / "out" / "smoke" / "imagenet.md").read_text()
    assert "Smoke run" in markdown and "top5 is top-3 here" in markdown
    assert not list((smoke / "runs").rglob("*.ckpt")), "checkpoints go once records exist"


def test_missing_imagenet_is_one_line(tmp_path, capsys):
    code = main(["run", "imagenet", "--data-root", str(tmp_path), "--device", "cpu",
                 "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"expected {tmp_path / 'imagenet' / 'train'} and {tmp_path / 'imagenet' / 'val'}" in err


class _Killed(Exception):
    pass


def _train(tmp_path: Path, name: str, kill_after: int | None, monkeypatch) -> dict:
    """Two smoke epochs; optionally killed once epoch ``kill_after`` is saved."""
    real = imagenet.save_checkpoint

    def save_then_maybe_die(path, **kw):
        real(path, **kw)
        if kw["epoch"] == kill_after:
            raise _Killed

    monkeypatch.setattr(imagenet, "save_checkpoint", save_then_maybe_die)
    protocol = replace(SPEC.protocol("smoke"), epochs=2, lr=0.01, lr_steps=((1, 0.005),))
    data = open_folders("imagenet_smoke", tmp_path / "data")
    store = RunStore(tmp_path / name)
    config = {"table": "imagenet", "profile": "smoke", "variant": "small", "seed": 3}

    def run():
        torch.manual_seed(3)  # a small net with BN: the loop is the same for ResNet-50
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(8, 3),
        )  # fmt: skip
        result, _ = imagenet.run_folder_cell(
            model, data, protocol, config, store=store, device=torch.device("cpu"), desc="",
            runtime=Runtime(channels_last=False), save_weights=False,
        )  # fmt: skip
        return model, result

    if kill_after is not None:
        with pytest.raises(_Killed):
            run()
        assert store.path(config).with_suffix(".ckpt").is_file()
    model, result = run()
    return {"state": model.state_dict(), "history": result.history}


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "data")
    whole = _train(tmp_path, "whole", None, monkeypatch)
    resumed = _train(tmp_path, "resumed", 1, monkeypatch)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"] == whole["history"]
    for key, value in whole["state"].items():
        assert torch.equal(value, resumed["state"][key]), key


def test_torchrun_two_processes_split_the_data(tmp_path):
    write_image_folder(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "harness", "run", "imagenet", "--profile", "smoke",
           "--device", "cpu", "--data-root", str(tmp_path / "data"),
           "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    records = sorted((tmp_path / "runs" / "imagenet" / "smoke").glob("*.json"))
    assert len(records) == len(SPEC.rows)  # one per cell: rank 1 wrote none
    assert done.stdout.count("imagenet.csv") == 1  # reports written once, by rank 0
    for path in records:
        epoch = json.loads(path.read_text())["history"][0]
        assert epoch["rank_samples"] == [6, 6]
        assert epoch["samples_seen_twice"] == 0 and epoch["samples_unseen"] == 0


def test_loader_workers_share_the_cpus_the_run_may_use(monkeypatch):
    """Eight decoding workers per rank at most, fewer where the job's cores or quota are
    fewer, split between the ranks torchrun starts on the node; the smoke set keeps none."""
    from harness.core import machine
    from harness.data.imagenet import FOLDER_SETS, loader_workers

    full = FOLDER_SETS["imagenet"]
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for budget, want in ((64, 8), (4, 4), (1, 1)):
        monkeypatch.setattr(machine, "cpu_budget", lambda b=budget: b)
        assert loader_workers(full) == want
    monkeypatch.setattr(machine, "cpu_budget", lambda: 16)
    for ranks, want in (("2", 8), ("4", 4), ("32", 1), ("x", 8)):
        monkeypatch.setenv("LOCAL_WORLD_SIZE", ranks)
        assert loader_workers(full) == want
    assert loader_workers(FOLDER_SETS["imagenet_smoke"]) == 0
