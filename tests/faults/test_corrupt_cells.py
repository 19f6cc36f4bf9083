"""Damaged files beside a record (image-result cache, training result, weights, the
shared-training index, checkpoints) are quarantined with a warning naming them, and the
cell is redone: nothing crashes."""

import json
import os
import shutil

import pytest
import torch
from torch import nn

from harness.cli import main
from harness.store.records import RunStore
from harness.train.checkpoint import load_checkpoint, save_checkpoint
from tests.faults.helpers import cli

SMOKE = ("--profile", "smoke")


@pytest.fixture(scope="module")
def table4_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("table4") / "runs"
    assert (
        main(["run", "table4", *SMOKE, "--runs-dir", str(runs), "--out", str(runs.parent / "r")])
        == 0
    )
    return runs


@pytest.fixture
def cell(table4_runs, tmp_path):
    """A private copy of the run, and one cell's record in it (its other files are the
    record's path with another suffix)."""
    copy = tmp_path / "runs"
    shutil.copytree(table4_runs, copy, copy_function=os.link)
    records = sorted((copy / "table4" / "smoke").glob("denoiser.fp1-seed0-*.json"))
    return copy, next(r for r in records if not r.name.endswith(".train.json"))


def _replace(path, data):
    """Damage a hard-linked file by replacing it (the shared original stays intact)."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        data(path)


def _rerun(runs, capsys):
    code, out, err = cli(capsys, "run", "table4", *SMOKE, "--runs-dir", runs, "--out",
                         runs.parent / "reports")  # fmt: skip
    assert code == 0, err
    assert "14 already done, 1 to run" in out
    return [line for line in err.splitlines() if line.startswith("warning:")]


def _redone(path):
    record = json.loads(path.read_text())
    assert record["status"] == "complete" and record["metrics"]["n_images"] > 0
    return record


def _cache_lines(text, bad):
    lines = text.splitlines(keepends=True)
    return (lines[0] + bad + "\n" + "".join(lines[1:])).encode()


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["{}", "null", "[1, 2]", '{"image": "x", "psnr": "high"}'])
def test_damaged_cache_line(cell, capsys, bad):
    runs, record = cell
    cache = record.with_suffix(".images.jsonl")
    good = cache.read_text().splitlines()
    _replace(cache, _cache_lines(cache.read_text(), bad))
    record.unlink()
    (warning,) = _rerun(runs, capsys)
    assert str(cache) in warning and "line 2" in warning
    _redone(record)
    assert cache.read_text().splitlines() == good  # the good lines kept, none re-tested


@pytest.mark.slow
@pytest.mark.parametrize(
    ("suffix", "damage"),
    [(".train.json", b'{"history": '), (".train.json", b'{"history": 3}'),
     (".train.json", b"[]"), (".pt", b"\x00\x01"), (".pt", lambda p: p.mkdir()),
     (".pt", lambda p: torch.save({"w": torch.zeros(2)}, p))],
    ids=["train-truncated", "train-wrong-type", "train-list", "pt-garbage", "pt-directory",
         "pt-wrong-shapes"],
)  # fmt: skip
def test_damaged_training_files(cell, capsys, suffix, damage):
    runs, record = cell
    path = record.with_suffix(suffix)
    _replace(path, damage)
    record.unlink()
    warnings = _rerun(runs, capsys)
    assert len(warnings) == 1 and str(path) in warnings[0], warnings
    assert len(list((runs / "_quarantine").iterdir())) == 1
    redone = _redone(record)
    assert redone["history"]  # retrained
    assert RunStore(runs).cell_weights(redone["config"]) is not None  # fresh weights that load


@pytest.mark.slow
def test_damaged_training_index(cell, capsys):
    runs, record = cell
    for suffix in (".json", ".pt", ".train.json"):  # the cell must look its model up
        record.with_suffix(suffix).unlink()
    index = next(p for p in (runs / "_trained").iterdir()
                 if record.stem in json.loads(p.read_text())["weights"])  # fmt: skip
    _replace(index, index.read_bytes()[:10])
    (warning,) = _rerun(runs, capsys)
    assert str(index) in warning
    _redone(record)
    assert json.loads(index.read_text())["weights"].endswith(record.stem + ".pt")


class _Net(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(2, width)


@pytest.mark.parametrize("damage", ["garbage", "missing-keys", "wrong-shapes", "directory"])
def test_damaged_checkpoint_starts_afresh(tmp_path, damage, capsys):
    path = tmp_path / "runs" / "t" / "p" / "cell.ckpt"
    path.parent.mkdir(parents=True)
    model = _Net(3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if damage == "garbage":
        path.write_bytes(b"\x80\x02")
    elif damage == "missing-keys":
        torch.save({"format": 1, "epoch": 1}, path)
    elif damage == "wrong-shapes":
        other = _Net(5)
        save_checkpoint(path, epoch=1, model=other, history=[], epoch_times_s=[],
                        optimizer=torch.optim.SGD(other.parameters(), lr=0.1))  # fmt: skip
    else:
        path.mkdir()
    assert load_checkpoint(path, model, optimizer) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and not path.exists()
    assert len(list((tmp_path / "runs" / "_quarantine").iterdir())) == 1


def test_good_checkpoint_resumes(tmp_path):
    model = _Net(3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "runs" / "t" / "p" / "cell.ckpt"
    save_checkpoint(path, epoch=2, model=model, optimizer=optimizer, history=[{"a": 1}],
                    epoch_times_s=[1.0])  # fmt: skip
    state = load_checkpoint(path, model, optimizer)
    assert state is not None and state["epoch"] == 2
