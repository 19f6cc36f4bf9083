"""Fuzzed files through the command line: a file the user gives is refused with exit 2 and
one line, before anything is written; a damaged file the tool wrote makes `plan` call its
cell stale, without a traceback and without touching anything."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cli import main
from tests.fuzz_inputs import MARKER, PICKLES, STATE_DICTS, folder, stderr_lines
from tests.test_fuzz_readers import CONFIG, RECORDS

GOLDEN = Path(__file__).parent / "golden" / "runs"


@pytest.fixture(autouse=True)
def _no_payload_ran():
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "a planted pickle ran"


# every one of these is refused: no bytes, pickle or state dict fits the denoiser
@given(st.one_of(st.binary(max_size=512), PICKLES, STATE_DICTS))
def test_denoiser_weights_option(data):
    with folder() as root:
        weights = root / "given" / "w.pt"
        weights.parent.mkdir()
        weights.write_bytes(data)
        with stderr_lines() as lines:
            code = main(["run", "adversarial", "--profile", "smoke", "--denoiser-weights",
                         str(weights), "--data-root", str(root / "data"), "--runs-dir",
                         str(root / "runs"), "--out", str(root / "out")])  # fmt: skip
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
        assert "denoiser-weights" in lines[0] or str(weights) in lines[0], lines
        assert sorted(p.name for p in root.iterdir()) == ["given"]  # nothing made


@settings(max_examples=max(settings.default.max_examples // 3, 1))  # the reader: test_record
@given(RECORDS)
def test_plan_over_a_damaged_record(data):
    with folder() as root:
        runs = root / "runs"
        shutil.copytree(GOLDEN / "table1", runs / "table1")
        path = next(runs.glob(f"table1/smoke/{CONFIG['variant']}-seed0-*.json"))
        path.write_bytes(data)
        before = sorted(runs.rglob("*"))
        with stderr_lines() as lines:
            code = main(["plan", "table1", "--profile", "smoke", "--runs-dir", str(runs)])
        assert code == 0 and not lines, lines
        assert sorted(runs.rglob("*")) == before  # plan only reads
