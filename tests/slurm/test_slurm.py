"""``--executor slurm`` against a real one-node SLURM cluster (tests/slurm/cluster.sh):
submitit job arrays, the run store as the authority, killed jobs and submitters."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from harness.cli import main
from harness.run import jobs
from harness.run.runner import make_executor, run_table
from harness.run.slurm import cell_request
from harness.store.records import RunStore
from harness.tables.cells import table_cells
from harness.tables.paper import IMAGENET, TABLE1, get_table
from tests.fixtures import write_image_folder

ROOT = Path(__file__).resolve().parents[2]
ROWS = ("mnist.baseline", "mnist.fp_max_s2")  # two rows of Table 1 keep the test short
SMALL = replace(TABLE1, rows=ROWS)
# the submitting process: follows its jobs (no --detach) until it is killed
DRIVER = f"""
import sys
from dataclasses import replace
from harness.run.runner import make_executor
from harness.run.runner import run_table
from harness.store.records import RunStore
from harness.tables.paper import TABLE1
run_table(replace(TABLE1, rows={ROWS!r}), profile="smoke", seeds=1, device="cpu",
          store=RunStore(sys.argv[1]), data_root=sys.argv[1],
          executor=make_executor("slurm", max_parallel=1))
"""


def _run(store: RunStore, executor=None):
    return run_table(SMALL, profile="smoke", seeds=1, device="cpu", store=store,
                     data_root=store.root, executor=executor, log=lambda _: None)  # fmt: skip


def _records(runs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((runs / "table1" / "smoke").glob("*.json"))]


def _until(condition, what: str, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def _plan_line(runs: Path, variant: str, capsys) -> str:
    capsys.readouterr()
    assert main(["plan", "table1", "--profile", "smoke", "--runs-dir", str(runs)]) == 0
    return capsys.readouterr().out.splitlines()[1 + get_table("table1").rows.index(variant)]


@pytest.mark.slow
def test_killed_submitter_scancel_rerun_wait_and_max_parallel(tmp_path, slurm_cluster, capsys):
    """One array of two cells at most one at a time; its submitter is killed and the
    first cell scancelled once it runs: plan shows it stale with SLURM's notice, a
    rerun submits only it, `wait` writes the report, and the numbers are the local
    executor's."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(runs)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _until(lambda: len(jobs.submissions(runs)) == 2, "the submission")
        first, second = sorted(jobs.submissions(runs).values(), key=lambda e: e["job"])
        # cancelled as soon as it runs: it is still starting (imports, data) or training
        _until(lambda: jobs.job_states([first])[first["job"]] == "RUNNING", "the first cell")
    finally:
        driver.kill()  # the login node goes away; the jobs go on
        driver.wait()
    sbatch = next((runs / jobs.LOGS).glob("*_submission.sh")).read_text()
    assert "#SBATCH --array=0-1%1" in sbatch and "#SBATCH --cpus-per-task=1" in sbatch
    subprocess.run(["scancel", first["job"]], check=True)
    _until(lambda: jobs.job_states([first])[first["job"]] is None, "scancel")
    line = _plan_line(runs, first["config"]["variant"], capsys)
    assert f"stale, to rerun (SLURM job {first['job']}, log {first['log']} ended" in line
    assert "CANCELLED" in line, line  # slurmstepd's notice in the job's log
    assert f"SLURM job {second['job']}" in _plan_line(runs, second["config"]["variant"], capsys)

    local = RunStore(tmp_path / "local")  # the same cells here, while SLURM runs the second
    assert _run(local).ran == 2
    _until(lambda: RunStore(runs).load(second["config"]) is not None, "the second cell")

    detached = _run(RunStore(runs), make_executor("slurm", max_parallel=1, detach=True))
    assert (detached.ran, detached.skipped, detached.submitted) == (0, 1, 1)
    index = jobs.submissions(runs)
    assert index[second["key"]] == second and index[first["key"]]["job"] != first["job"]
    assert main(["wait", "table1", "--profile", "smoke", "--runs-dir", str(runs),
                 "--out", str(out)]) == 0  # fmt: skip
    assert (out / "smoke" / "table1.md").is_file()
    assert (
        _plan_line(runs, first["config"]["variant"], capsys)
        .split("seed 0")[1]
        .strip()
        .startswith("done")
    )
    assert len((runs / jobs.INDEX).read_text().splitlines()) == 3  # the cancelled cell twice

    ours, theirs = _records(local.root), _records(runs)
    assert [r["key"] for r in ours] == [r["key"] for r in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert a["metrics"]["accuracy"] == b["metrics"]["accuracy"]
        assert a["history"][-1]["train_loss"] == pytest.approx(b["history"][-1]["train_loss"])
        assert b["executor"] == "slurm" and b["contention"] == 1  # no other lease meanwhile
    # one cell at a time throughout (record starts are whole seconds, hence the 1)
    spans = sorted((datetime.fromisoformat(r["started_at"]).timestamp(), r["wall_s"])
                   for r in theirs)  # fmt: skip
    assert spans[1][0] >= spans[0][0] + spans[0][1] - 1.0, spans


@pytest.mark.slow
def test_requests_follow_the_tasks_pricing(tmp_path):
    """A denoiser cell asks for more memory and time than an MNIST cell; a classical
    method asks for no GPU."""
    store = RunStore(tmp_path)

    def request(table: str, variant: str):
        spec = get_table(table)
        config = next(c for c in table_cells(spec, "paper", 1) if c["variant"] == variant)
        return cell_request(spec, config, store, gpus=1, cpus=None)

    mnist = request("table1", "mnist.baseline")
    assert (mnist.gpus, mnist.cpus) == (1, 4)
    denoiser = request("table4", "denoiser.fp2")
    assert denoiser.mem_gb > mnist.mem_gb and denoiser.minutes > mnist.minutes
    classical = request("table6", "classical.bm3d")
    assert (classical.gpus, classical.cpus) == (0, 1)


def test_batch_options_are_refused_in_one_line(capsys):
    base = ["run", "table1", "--profile", "smoke", "--device", "cpu"]
    for extra, word in ((["--partition", "gpu"], "--partition needs --executor slurm"),
                        (["--executor", "submitit-local", "--max-parallel", "2"], "--max-parallel"),
                        (["--executor", "slurm", "--slurm-arg", "nokey"], "KEY=VALUE"),
                        (["--executor", "slurm", "--time-limit", "0"], "--time-limit")):  # fmt: skip
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert word in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_sigusr1_requeues_and_resumes_from_the_epoch_checkpoint(tmp_path, slurm_cluster):
    """Preemption: SIGUSR1 to a training cell's job makes submitit requeue it, and the
    requeued job resumes from the cell's last per-epoch checkpoint (image-folder task)."""
    write_image_folder(tmp_path)
    smoke = IMAGENET.protocol("smoke")
    spec = replace(IMAGENET, rows=IMAGENET.rows[:1],
                   protocols={"smoke": replace(smoke, epochs=6)})  # fmt: skip
    store = RunStore(tmp_path / "runs")
    run_table(spec, profile="smoke", seeds=1, device="cpu", store=store, data_root=tmp_path,
              executor=make_executor("slurm", detach=True), log=lambda _: None)  # fmt: skip
    (entry,) = jobs.submissions(store.root).values()
    checkpoint = store.path(entry["config"]).with_suffix(".ckpt")
    _until(checkpoint.exists, "the first epoch's checkpoint", 120)
    subprocess.run(["scancel", "--signal=USR1", entry["job"]], check=True)
    _until(lambda: "Requeued job" in Path(entry["log"]).read_text(), "the requeue")
    # SLURM holds a requeued job back for about two minutes; the test lets it start now
    _until(lambda: jobs.job_states([entry])[entry["job"]] == "PENDING", "the requeue")
    # slurmd refuses a credential issued in the second its job's old one was revoked
    # ("Killing non-startable batch job: Job credential revoked"): start it a second later
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"jobid={entry['job']}", "StartTime=now"], check=True)
    _until(lambda: store.load(entry["config"]) is not None, "the resumed cell", 180)
    log = Path(entry["log"]).read_text()
    resumed = re.search(r"resuming after epoch (\d+)", log)
    assert resumed and int(resumed.group(1)) >= 1, log[-2000:]
    record = store.load(entry["config"])
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3, 4, 5, 6]
    assert not checkpoint.exists() and len(jobs.submissions(store.root)) == 1


def test_index_keeps_the_newest_submission_and_logs_name_the_cause(tmp_path):
    err, out = tmp_path / "1_0_0_log.err", tmp_path / "1_0_0_log.out"
    entry = {"key": "abc", "backend": jobs.LOCAL, "job": str(os.getpid()), "log": str(out),
             "err": str(err), "submitted_at": 0.0}  # fmt: skip
    jobs.record_submissions(tmp_path, [{**entry, "job": "1"}])
    with jobs.index_path(tmp_path).open("a") as handle:
        handle.write('{"key": "cut sh')  # a write cut short is skipped, not fatal
    jobs.record_submissions(tmp_path, [entry])
    assert jobs.submissions(tmp_path) == {"abc": entry}
    assert jobs.job_states([entry]) == {entry["job"]: "RUNNING"}  # this process
    child = subprocess.Popen(["true"])
    child.wait()
    assert jobs.job_states([{**entry, "job": str(child.pid)}]) == {str(child.pid): None}
    assert jobs.last_log_line(entry) == "(its log is empty or missing)"
    out.write_text("submitit INFO - Starting\nepoch 1\n")
    assert jobs.last_log_line(entry) == "epoch 1"
    err.write_text("slurmstepd: error: *** JOB 1 ON n1 DUE TO TIME LIMIT ***\nsrun: Killed\n\n")
    assert jobs.last_log_line(entry) == "slurmstepd: error: *** JOB 1 ON n1 DUE TO TIME LIMIT ***"
