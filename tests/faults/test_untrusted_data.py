"""Data files never run code: a planted pickle is refused, and what it carried never ran."""

import os
import pickle

import pytest

from harness.core.errors import UserError
from harness.data.cifar import load_batch
from tests.faults.helpers import assert_refused
from tests.fixtures import write_cifar10_fixture


class _Payload:
    """Unpickling this calls os.system (a plain pickle.load would run it)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _plant(tmp_path, marker):
    write_cifar10_fixture(tmp_path)
    batch = tmp_path / "cifar10-fixture" / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": _Payload(marker), "labels": []}, protocol=2))
    return batch


def test_planted_batch_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    batch = _plant(tmp_path, marker)
    with pytest.raises(UserError, match=r"refusing to read .*system"):
        load_batch(batch)
    assert not marker.exists()
    pickle.loads(batch.read_bytes())  # the control: an ordinary unpickler does run it
    assert marker.exists()


def test_smoke_table_refuses_planted_batch(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    _plant(tmp_path, marker)
    runs, out = tmp_path / "runs", tmp_path / "reports"
    assert_refused(
        capsys, "run", "table2", "--profile", "smoke", "--data-root", tmp_path,
        "--runs-dir", runs, "--out", out, says="refusing to read", nothing_under=tmp_path,
    )  # fmt: skip
    assert not marker.exists() and not runs.exists() and not out.exists()


def test_real_batches_still_read(tmp_path):
    arrays = write_cifar10_fixture(tmp_path, n_train=10, n_test=5)
    entry = load_batch(tmp_path / "cifar10-fixture" / "cifar-10-batches-py" / "test_batch")
    assert (entry["data"] == arrays["test_x"].reshape(5, -1)).all()
