"""One smoke run of Table 1, shared: the corruption tests each damage a copy of it."""

import os
import shutil

import pytest

from harness.cli import main


@pytest.fixture(scope="session")
def table1_runs(tmp_path_factory):
    """A finished smoke run of Table 1 (7 cells, records and weights)."""
    runs = tmp_path_factory.mktemp("table1") / "runs"
    out = runs.parent / "reports"
    assert (
        main(["run", "table1", "--profile", "smoke", "--runs-dir", str(runs), "--out", str(out)])
        == 0
    )
    return runs


@pytest.fixture
def runs_copy(table1_runs, tmp_path):
    """A private copy of the finished run (hard links: damage a file by replacing it,
    never by writing into it)."""
    copy = tmp_path / "runs"
    shutil.copytree(table1_runs, copy, copy_function=os.link)
    return copy
