"""What a finished record points to: the size and SHA-256 of its weights and caches are
in the record, so damage behind it is found (sizes by every `plan` and `run`, hashes by
`plan --verify` and before another table reuses a model); the cell is then stale, moved
to `_quarantine/` with one warning, and redone. No path in the runs folder leads out of it."""

import json
import os

import pytest
import torch

from harness.core.errors import UserError
from harness.store.records import RunStore, file_digest
from tests.faults.helpers import ROOT, cli

SMOKE = ("--profile", "smoke")
GOLDEN_RECORD = ROOT / "tests/golden/runs/table1/smoke/mnist.baseline-seed0-8392408e21c9.json"


def _first_cell(runs):
    record = sorted((runs / "table1" / "smoke").glob("*.json"))[0]
    return record, record.with_suffix(".pt")


def _replace(path, data):
    """Damage a hard-linked copy by replacing it (the shared original stays intact)."""
    path.unlink()
    path.write_bytes(data)


def _plan(runs, capsys, *extra):
    code, out, err = cli(capsys, "plan", "table1", *SMOKE, "--runs-dir", runs, *extra)
    assert code == 0, err
    return out, [line for line in err.splitlines() if line.strip()]


def _run(runs, capsys):
    code, out, err = cli(capsys, "run", "table1", *SMOKE, "--runs-dir", runs, "--out",
                         runs.parent / "reports")  # fmt: skip
    assert code == 0, err
    return out, [line for line in err.splitlines() if line.startswith("warning:")]


def test_weights_cut_short_are_found_by_plan_and_redone_by_run(runs_copy, capsys):
    record, weights = _first_cell(runs_copy)
    assert json.loads(record.read_text())["files"] == {weights.name: file_digest(weights)}
    _replace(weights, weights.read_bytes()[:1000])
    out, err = _plan(runs_copy, capsys)
    assert "6 of 7 cells done" in out and f"{weights.name} holds 1000 bytes" in out and not err
    assert record.exists() and weights.exists()  # plan only reads
    out, warnings = _run(runs_copy, capsys)
    assert "6 already done, 1 to run" in out
    assert len(warnings) == 1 and str(record) in warnings[0] and str(weights) in warnings[0]
    assert len(list((runs_copy / "_quarantine").iterdir())) == 2  # the record and its weights
    assert "7 of 7 cells done" in _plan(runs_copy, capsys)[0]


def test_garbled_weights_of_the_same_size_are_found_by_verify(runs_copy, capsys):
    record, weights = _first_cell(runs_copy)
    _replace(weights, os.urandom(weights.stat().st_size))
    assert "7 of 7 cells done" in _plan(runs_copy, capsys)[0]  # sizes match: not hashed
    out, err = _plan(runs_copy, capsys, "--verify")
    assert "6 of 7 cells done" in out and "does not match the SHA-256" in out
    assert len(err) == 1 and str(weights) in err[0] and not record.exists()
    out, warnings = _run(runs_copy, capsys)
    assert "6 already done, 1 to run" in out and not warnings
    assert "7 of 7 cells done" in _plan(runs_copy, capsys, "--verify")[0]


def test_garbled_cache_line_beside_an_intact_record(tmp_path):
    store = RunStore(tmp_path / "runs")
    record = json.loads(GOLDEN_RECORD.read_text())
    cache = store.path(record["config"]).with_suffix(".images.jsonl")
    cache.parent.mkdir(parents=True)
    cache.write_text('{"image": "a", "psnr": 30.0}\n{"image": "b", "psnr": 31.0}\n')
    store.save(record)
    assert store.load(record["config"]) is not None
    cache.write_text('{"image": "a", "psnr": 30.0}\n{"image": "b", "psnr": 91.0}\n')  # same size
    assert store.inspect(record["config"])[0] is not None  # sizes only
    assert (
        "does not match the SHA-256"
        in RunStore(store.root, verify=True).inspect(record["config"])[1]
    )
    cache.write_text('{"image": "a", "psnr": 30.0}\n{"image": "b", "ps')  # cut short
    assert "holds" in store.inspect(record["config"])[1]


def _shared(tmp_path):
    store = RunStore(tmp_path / "runs")
    folder = store.root / "table4" / "smoke"
    folder.mkdir(parents=True)
    weights, history = folder / "d.pt", folder / "d.train.json"
    weights.write_bytes(b"w" * 100)
    history.write_text("{}")
    store.share_training("k", weights, history)
    return store, weights, history


def test_a_model_reused_by_another_table_is_hashed_first(tmp_path, capsys):
    store, weights, history = _shared(tmp_path)
    assert store.shared_training("k") == (weights, history)
    _replace(weights, b"x" * 100)  # same size: only the hash tells
    assert store.shared_training("k", read_only=True) == (weights, history)  # plan: sizes only
    verifying = RunStore(store.root, verify=True)  # plan --verify: not reused, nothing moved
    assert verifying.shared_training("k", read_only=True) is None
    assert weights.exists() and not capsys.readouterr().err
    assert store.shared_training("k") is None  # run: trains it again
    (warning,) = capsys.readouterr().err.splitlines()
    assert "does not match the SHA-256" in warning and str(weights) in warning
    assert not weights.exists() and not (store.root / "_trained" / "k.json").exists()


def test_an_index_entry_pointing_outside_the_runs_folder_is_damage(tmp_path, capsys):
    store = _shared(tmp_path)[0]
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(b"w")
    for target in ("../elsewhere.pt", str(outside)):
        entry = store.root / "_trained" / "k.json"
        entry.write_text(json.dumps({"weights": target, "history": "table4/smoke/d.train.json"}))
        assert store.shared_training("k") is None
        (warning,) = capsys.readouterr().err.splitlines()
        assert "inside the runs folder" in warning and not entry.exists()
    (store.root / "table4" / "smoke" / "link.pt").symlink_to(outside)
    entry.write_text(json.dumps({"weights": "table4/smoke/link.pt", "history": "x"}))
    assert store.shared_training("k") is None and "inside" in capsys.readouterr().err
    assert outside.exists()  # never touched


def test_weights_read_for_a_figure_are_hashed_first(tmp_path, capsys):
    store = RunStore(tmp_path / "runs")
    record = json.loads(GOLDEN_RECORD.read_text())
    state = {"w": torch.arange(4.0)}
    store.save_weights(record["config"], state)
    store.save({**record, "weights": store.path(record["config"]).with_suffix(".pt").name})
    saved = store.load(record["config"])
    assert torch.equal(store.load_weights(saved)["w"], state["w"])
    weights = store.path(record["config"]).with_suffix(".pt")
    data = bytearray(weights.read_bytes())
    data[-30] ^= 1  # one bit, same size
    _replace(weights, bytes(data))
    with pytest.raises(UserError, match="does not match the SHA-256"):
        store.load_weights(saved)
    assert not weights.exists() and "moved to" in capsys.readouterr().err
