"""``python -m harness doctor``: checks, exit codes, the saved JSON and Markdown."""

import json
import os
import subprocess
import sys
import time
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
    for name in (
        "table1-fp32",
        "table1-bf16",
        "vgg-epoch",
        "train-step",
        "bench",
        "topk",
        "timing",
        "torchrun",
    ):
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


def _fake_compile(broken: str | None = None, wrong: str | None = None):
    """torch.compile stand-in: the module itself (eager), raising a two-line error for a
    TopKPool of impl ``broken``, and reversing the channels of impl ``wrong``'s output."""

    def compile_(module, **options):
        assert options["fullgraph"] and options["dynamic"] is False
        impl = getattr(module, "impl", None)
        if impl == broken:
            raise RuntimeError("no Triton for this GPU\n(a page of traceback)")
        if impl == wrong:
            return lambda x: module(x).flip(1)
        return module

    return compile_


def test_topk_compile_prints_each_candidate_on_one_line_and_a_failed_compile_is_not_fatal(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(torch, "compile", _fake_compile(broken="bitonic"))
    only = "topk-compile,train-step"
    assert (
        main(["doctor", "--device", "cpu", "--quick", "--only", only, "--out", str(tmp_path)]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    compiled = next(line for line in lines if line.startswith("[PASS] topk-compile"))
    assert "compiled reference: matches the reference (values, gradients, ties)" in compiled
    assert "over spatial FP fwd " in compiled and "at 1 of 1 shapes" in compiled
    assert (
        "compiled bitonic: not compiled as one graph (RuntimeError: no Triton for this GPU)"
        in compiled
    )
    step = next(line for line in lines if line.startswith("[PASS] train-step"))
    assert "images/s, stock DataLoader loop" in step and "interleaved rounds" in step
    assert "; data path alone (table1, batch 10): harness " in step
    result = json.loads(next(tmp_path.glob("doctor-cpu-*.json")).read_text())
    found = result["checks"][0]["details"]["candidates"]
    assert [c["compiled"] for c in found] == [True, False]
    assert {r["compiled"] for r in found[0]["ratios"]} == {True} and len(found[0]["ratios"]) == 2


def test_a_compiled_candidate_with_other_values_fails_the_check(monkeypatch):
    monkeypatch.setattr(torch, "compile", _fake_compile(wrong="reference"))
    ctx = doctor.Context(torch.device("cpu"), True, Path("."), frozenset({"topk-compile"}))
    outcome = doctor.check_topk_compile(ctx)
    assert outcome.status == "fail"
    assert "compiled reference: DIFFERS FROM the reference" in outcome.figure
    assert "compiled bitonic: matches" in outcome.figure


def test_topk_compile_is_skipped_on_the_cpu_unless_named():
    ctx = doctor.Context(torch.device("cpu"), True, Path("."), frozenset())
    outcome = doctor.check_topk_compile(ctx)
    assert outcome.status == "skipped" and "--only topk-compile" in outcome.figure


def test_checks_not_started_within_the_budget_are_skipped(tmp_path, capsys, monkeypatch):
    def slow(ctx):
        time.sleep(0.3)
        return doctor.verdict(True, "slept")

    monkeypatch.setitem(doctor.CHECKS, "timing", ("slow", slow))
    argv = ["doctor", "--device", "cpu", "--only", "timing,topk", "--out", str(tmp_path)]
    assert main([*argv, "--budget-s", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "[PASS] timing" in out
    assert "[SKIPPED] topk (0 s): not started: the doctor's budget of 0 s was spent" in out
    assert main([*argv, "--budget-s", "0"]) == 2
    assert "--budget-s must be positive" in capsys.readouterr().err


def test_on_a_gpu_the_vgg_run_uses_bf16_and_timeouts_are_cut_to_the_budget():
    """CUDA's branches without a GPU: a Context on a cuda device runs nothing here."""
    ctx = doctor.Context(torch.device("cuda"), False, Path("."), frozenset())
    assert doctor.vgg_epoch_options(ctx)[:2] == ["--amp", "bf16"]
    assert doctor._timeout(ctx, 300, 600) == 300
    ctx.deadline = time.perf_counter() + 100
    assert doctor.MIN_TIMEOUT_S <= doctor._timeout(ctx, 300, 600) <= 100
    quick = doctor.Context(torch.device("cuda"), True, Path("."), frozenset())
    assert doctor.vgg_epoch_options(quick) == ["--quick"]
