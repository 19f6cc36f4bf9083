"""A cgroup CPU quota (a container's ``--cpus``, a pod's limit) caps the CPUs a run uses:
torch counts cores and reads no quota, so without this a container granted one CPU on a
two-core machine trained with two threads, 1.7-1.9x slower per step than with one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core import machine
from tests.cgroups import needs_cgroup, quota_cgroup

ROOT = Path(__file__).parents[1]


def _quota_folder(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text)
    return folder


def test_the_lowest_quota_of_a_cgroup_and_its_parents_is_the_limit(tmp_path: Path) -> None:
    """v2 writes ``cpu.max`` ("max" for none), v1 a quota and a period in µs (-1 for
    none); a pod's limit may sit on a parent above its container's own."""
    pod = _quota_folder(tmp_path / "pod", cpu_max="150000 100000\n")
    unlimited = _quota_folder(tmp_path / "ctr", cpu_max="max 100000\n")
    v1 = _quota_folder(tmp_path / "job", cpu_cfs_quota_us="50000\n", cpu_cfs_period_us="100000\n")
    v1_none = _quota_folder(
        tmp_path / "root", cpu_cfs_quota_us="-1\n", cpu_cfs_period_us="100000\n"
    )
    absent = tmp_path / "gone"
    assert machine.quota_cpus([unlimited, pod]) == 1.5
    assert machine.quota_cpus([pod, v1, absent]) == 0.5
    assert machine.quota_cpus([unlimited, v1_none, absent]) is None
    assert machine.quota_cpus([]) is None


@pytest.mark.parametrize(
    ("quota", "budget"), [(None, 8), (16.0, 8), (2.0, 2), (1.5, 1), (0.2, 1), (3.9999999999, 4)]
)
def test_the_cpu_budget_is_the_cores_within_the_quota(monkeypatch, quota, budget) -> None:
    monkeypatch.setattr(machine, "cpus", lambda: 8)
    monkeypatch.setattr(machine, "cpu_quota", lambda: quota)
    assert machine.cpu_budget() == budget


def test_torch_threads_follow_the_quota_unless_omp_num_threads_is_set(monkeypatch) -> None:
    monkeypatch.setattr(machine, "cpus", lambda: 8)
    monkeypatch.setattr(machine, "cpu_quota", lambda: 2.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert machine.torch_threads(8) == 2 and machine.torch_threads(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "6")  # the user's own choice stands
    assert machine.torch_threads(6) == 6


@needs_cgroup
@pytest.mark.skipif(machine.cpus() < 2, reason="needs two cores to have more than the quota")
def test_a_run_in_a_one_cpu_container_trains_on_one_thread(tmp_path: Path) -> None:
    """For real: a shell in a cgroup with a one-CPU quota runs a one-row ablation through
    the CLI; torch alone would take every core, the cells' records say one thread."""
    script = (
        'echo $$ > "$1"; shift; "$@" -c "import torch; print(torch.get_num_threads())"; '
        '"$@" -m harness ablate mnist --method fp_max --stride 2 --profile smoke '
        f"--runs-dir {tmp_path / 'runs'} --out {tmp_path / 'reports'}"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    with quota_cgroup(1.0) as procs:
        done = subprocess.run(["sh", "-c", script, "sh", str(procs), sys.executable], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    if int(done.stdout.split()[0]) == 1:  # torch counts physical cores where MKL sets it
        pytest.skip("torch takes one thread here without the quota too")
    records = sorted((tmp_path / "runs").rglob("*.json"))
    assert len(records) == 2  # the baseline and the reduced row
    assert [json.loads(r.read_text())["threads"] for r in records] == [1, 1]
