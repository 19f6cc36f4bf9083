"""``python -m harness doctor``: checks, exit codes, the saved JSON and Markdown."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.tools import doctor

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_check_is_one_line_and_exit_2(tmp_path, capsys):
    assert (
        main(["doctor", "--device", "cpu", "--only", "timing,nosuch", "--out", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nosuch" in err and "table1-fp32" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_doctor_on_a_missing_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["doctor", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "--device cpu" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_failed_or_crashed_check_fails_the_run_and_the_rest_still_run(
    tmp_path, capsys, monkeypatch
):
    def crash(ctx):
        raise RuntimeError("device lost")

    monkeypatch.setitem(doctor.CHECKS, "topk", ("top-k", crash))
    monkeypatch.setitem(
        doctor.CHECKS, "bench", ("bench", lambda ctx: doctor.verdict(False, "0 GB/s"))
    )
    only = "topk,bench,timing"
    assert main(["doctor", "--device", "cpu", "--only", only, "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] topk" in out and "RuntimeError: device lost" in out and "[PASS] timing" in out
    result = json.loads(next(tmp_path.glob("doctor-cpu-*.json")).read_text())
    assert not result["passed"] and result["failed"] == ["topk", "bench"]
    assert [c["name"] for c in result["checks"]] == only.split(",")
    markdown = next(tmp_path.glob("doctor-cpu-*.md")).read_text()
    assert "Failed: topk, bench" in markdown and "| fail |" in markdown


def test_cpu_timing_check_compares_the_stopwatch_with_another_clock():
    outcome = doctor.check_timing(doctor.Context(torch.device("cpu"), True, Path("."), frozenset()))
    assert outcome.status == "pass", outcome.figure
    assert "CUDA events: skipped" in outcome.figure
    assert (
        outcome.details["slept_s"]
        <= outcome.details["stopwatch_s"]
        <= outcome.details["monotonic_s"]
    )


@pytest.mark.slow
def test_doctor_on_the_cpu_passes_with_a_shrunk_budget(tmp_path):
    """What CI runs: every check on the CPU, quick; exit 0, one JSON and one Markdown, and
    nothing written where it runs (its runs and reports go to a temporary folder)."""
    here, out = tmp_path / "cwd", tmp_path / "out"
    here.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "harness", "doctor", "--device", "cpu", "--quick", "--out", str(out)],
        cwd=here, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not any(here.iterdir())
    result = json.loads(next(out.glob("doctor-cpu-*.json")).read_text())
    assert [c["name"] for c in result["checks"]] == list(doctor.CHECKS)
    statuses = {c["name"]: c["status"] for c in result["checks"]}
    for name in ("table1-fp32", "table1-bf16", "vgg-epoch", "bench", "topk", "timing", "torchrun"):
        assert statuses[name] == "pass", name
    assert all(c["figure"] for c in result["checks"]) and result["passed"]
    assert result["env"]["torch"] == torch.__version__
    assert next(out.glob("doctor-cpu-*.md")).read_text().startswith("# Doctor: ")


def test_records_must_be_all_there_from_the_device_and_finite():
    ctx = doctor.Context(torch.device("cpu"), True, Path("."), frozenset())
    rows = doctor.TABLES["table1"].rows

    def records(**change):
        made = [{"config": {"variant": v}, "env": {"device": "cpu"}, "metrics": {"accuracy": 0.5}}
                for v in rows]  # fmt: skip
        made[-1] = {**made[-1], **change}
        return made

    assert doctor.check_records(ctx, records(), "table1", "accuracy") is None
    assert "expected 7" in doctor.check_records(ctx, records()[:-1], "table1", "accuracy")
    on_gpu = records(env={"device": "cuda:0"})
    assert "ran on cuda:0" in doctor.check_records(ctx, on_gpu, "table1", "accuracy")
    nan = records(metrics={"accuracy": float("nan")})
    assert "accuracy is nan" in doctor.check_records(ctx, nan, "table1", "accuracy")
