"""The README's smoke commands work on a fresh checkout (no data folder at all)."""

import pytest

from harness.data.imagenet import FIXTURE_FOLDER
from tests.faults.helpers import cli


@pytest.mark.slow
def test_adversarial_smoke_writes_its_own_fixture(tmp_path, capsys):
    data = tmp_path / "data"
    code, out, err = cli(capsys, "run", "adversarial", "--profile", "smoke", "--data-root", data,
                         "--runs-dir", tmp_path / "runs", "--out", tmp_path / "out")  # fmt: skip
    assert code == 0, err
    assert (data / FIXTURE_FOLDER / "val").is_dir() and "adversarial.md" in out
