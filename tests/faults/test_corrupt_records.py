"""A damaged record is never "done", never crashes a command, never silently vanishes:
plan calls it stale, report names it, run quarantines it and redoes its cell."""

import csv
import io
import json
import math
import os
import stat

import pytest

from harness.store.records import RunStore, record_problem
from tests.faults.helpers import cli

SMOKE = ("--profile", "smoke")


def _with(**fields):
    """A damage: the record with ``fields`` replaced (the config with ``config``'s keys)."""

    def damage(text):
        record = json.loads(text)
        config = {**record["config"], **fields.get("config", {})}
        rest = {k: v for k, v in fields.items() if k != "config"}
        return json.dumps({**record, **rest, "config": config}).encode()

    return damage


CORRUPTIONS = {
    "truncated": lambda text: text[: len(text) // 2].encode(),
    "empty": lambda text: b"",
    "non-utf8": lambda text: b"\xff\xfe" + text.encode()[2:],
    "list-shaped": lambda text: json.dumps([json.loads(text)]).encode(),
    "stub": lambda text: b'{"status": "complete"}',
    "other-schema": _with(schema=0),
    "metrics-wrong-type": _with(metrics=[1]),
    "metric-wrong-type": _with(metrics={"accuracy": "high"}),
    "history-wrong-type": _with(history="x"),
    "started_at-wrong-type": _with(started_at=5),
    "started_at-not-a-date": _with(started_at="yesterday"),
    "config-swapped": _with(config={"seed": 7}),
}


def _damage(runs, kind):
    record = sorted((runs / "table1" / "smoke").glob("*seed0-*.json"))[0]
    text = record.read_text()
    record.unlink()  # a hard link to the shared run: replace, never write into
    record.write_bytes(CORRUPTIONS[kind](text))
    return record


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_damaged_record_is_stale_then_redone(runs_copy, kind, capsys):
    record = _damage(runs_copy, kind)
    damaged = record.read_bytes()

    code, out, err = cli(capsys, "plan", "table1", *SMOKE, "--runs-dir", runs_copy)
    assert code == 0, err
    assert "6 of 7 cells done" in out and "stale, to rerun" in out
    assert record.read_bytes() == damaged  # plan only reads

    code, out, err = cli(capsys, "run", "table1", *SMOKE, "--runs-dir", runs_copy,
                         "--out", runs_copy.parent / "reports")  # fmt: skip
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(record) in warnings[0] and "_quarantine" in warnings[0]
    assert "6 already done, 1 to run" in out
    kept = list((runs_copy / "_quarantine").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == damaged
    redone = json.loads(record.read_text())
    assert record_problem(redone, record.stem.rsplit("-", 1)[1]) is None

    code, out, err = cli(capsys, "report", "table1", *SMOKE, "--runs-dir", runs_copy,
                         "--format", "csv")  # fmt: skip
    assert code == 0 and not err
    assert all(row["accuracy"] for row in csv.DictReader(io.StringIO(out)))


def test_report_names_a_damaged_record(runs_copy, capsys):
    record = _damage(runs_copy, "truncated")
    code, _, err = cli(capsys, "report", "table1", *SMOKE, "--runs-dir", runs_copy,
                       "--format", "csv")  # fmt: skip
    assert code == 0
    assert f"warning: {record} is unreadable" in err  # not a silent drop
    assert len(list((runs_copy / "_quarantine").iterdir())) == 1


def test_nonfinite_numbers_are_strict_json_and_read_back(runs_copy):
    store = RunStore(runs_copy)
    record = next(store.records("table1", "smoke"))
    record.pop("_path")
    record["metrics"]["accuracy"] = math.nan
    record["history"][0]["train_loss"] = -math.inf
    path = store.save(record)

    def refuse(token):
        raise AssertionError(f"{token} is not strict JSON")

    saved = json.loads(path.read_text(), parse_constant=refuse)
    assert saved["metrics"]["accuracy"] is None
    expected = [[["metrics", "accuracy"], "nan"], [["history", 0, "train_loss"], "-inf"]]
    assert sorted(map(json.dumps, saved["nonfinite"])) == sorted(map(json.dumps, expected))
    again = store.load(record["config"])
    assert math.isnan(again["metrics"]["accuracy"])
    assert again["history"][0]["train_loss"] == -math.inf


def test_records_keep_the_users_umask(runs_copy):
    store = RunStore(runs_copy)
    record = next(store.records("table1", "smoke"))
    record.pop("_path")
    old = os.umask(0o002)
    try:
        path = store.save(record)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
