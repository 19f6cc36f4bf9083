"""Finding studies' records and files (harness/tables/recorded.py) in a hostile runs
folder: whatever a record file holds, the lookup answers None, never an exception."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.store.records import RunStore
from harness.tables.recorded import has_records, recorded_studies, study_file

HOSTILE = {
    "not_utf8": b"\xff\xfe",
    "a_list": b"[]",
    "number_command": b'{"command": 5}',
    "unbalanced_quote": b'{"command": "python -m harness run \'x.toml"}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "empty": b"",
    "missing_file": b'{"command": "python -m harness run gone.toml"}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_record_gives_no_file_and_no_error(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "runs" / name / "smoke"
    folder.mkdir(parents=True)
    (folder / "r.json").write_bytes(HOSTILE[name])
    store = RunStore(tmp_path / "runs")
    assert recorded_studies(store) == [name] and has_records(store, name)
    assert study_file(store, name) is None


def test_the_file_a_record_names_is_found_and_quoted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("my study.toml").write_text("")
    (tmp_path / "runs" / "s" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "s" / "demo" / "r.json").write_text(
        '{"command": "python -m harness run \'my study.toml\' --profile demo"}'
    )
    store = RunStore(tmp_path / "runs")
    assert study_file(store, "s") == "'my study.toml'"
    assert has_records(store, "s") and not has_records(store, "../runs/s")  # same folder


def test_a_cells_train_json_is_not_taken_for_its_record(tmp_path: Path, monkeypatch) -> None:
    """A denoising cell's ``.train.json`` (written beside its record, later) names no
    command: the record's command is read all the same."""
    monkeypatch.chdir(tmp_path)
    Path("s.toml").write_text("")
    folder = tmp_path / "runs" / "s" / "demo"
    folder.mkdir(parents=True)
    (folder / "r.json").write_text('{"command": "python -m harness run s.toml"}')
    (folder / "r.train.json").write_text('{"history": []}')
    os.utime(folder / "r.json", (1, 1))  # the older of the two
    assert study_file(RunStore(tmp_path / "runs"), "s") == "s.toml"
