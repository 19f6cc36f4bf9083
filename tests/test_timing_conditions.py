"""Timings a reader can trust: the machine's state recorded per timed phase, the rule that
calls a time disturbed, the report's marks, and claims on time ratios (issue 29)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from harness.core import machine
from harness.core.machine import Sample
from harness.core.protocol import Protocol
from harness.render.report import build_report, render_csv, render_markdown
from harness.render.results import results
from harness.render.timing import MARK, record_verdict
from harness.stats.claims import Claim, Timed, check
from harness.store.records import RunStore
from harness.tables.paper import TABLE1
from harness.train.checkpoint import load_checkpoint, save_checkpoint
from harness.train.loop import Steps, fit, make_optimizer
from harness.train.measure import timing_fields
from tests.cgroups import needs_cgroup, quota_cgroup

GOLDEN = Path(__file__).parent / "golden"
TICK = machine._TICK


def _sample(at: float, busy: int, total: int, own: float, load1: float = 0.5) -> Sample:
    return Sample(at, load1, busy, total, 2, own)


def test_others_cpu_is_the_machine_less_this_process_tree() -> None:
    """Over 1 s on 2 cores: 1.5 core-seconds busy, 0.5 of them ours, so others used 1 core."""
    start = _sample(0.0, 1000, 10_000, own=1.0)
    end = _sample(1.0, 1000 + int(1.5 * TICK), 10_000 + 2 * TICK, own=1.5, load1=2.5)
    got = machine.state(start, end)
    assert got["others_cores"] == pytest.approx(1.0)
    assert got["load1"] == 2.5 and got["seconds"] == 1.0
    short = _sample(0.01, 1001, 10_002, own=1.0)  # two ticks: too short to tell
    assert machine.state(start, short)["others_cores"] is None


def test_a_real_sample_sees_this_process_work() -> None:
    before = machine.sample()
    spent = time.process_time() + 0.06
    while time.process_time() < spent:  # 60 ms of this process's CPU, however busy the machine
        pass
    after = machine.sample()
    assert after.own - before.own > 0.03  # counted as ours (in clock ticks of 10 ms)
    assert os.getpid() in machine.process_tree()


# /proc/stat of a 4-core node: cpu0 and cpu1 ran flat out over the last second (another
# job's), cpu2 and cpu3 (ours) were idle but for 0.2 s of cpu2 (ticks: user nice system idle)
STAT = f"""cpu  {2 * TICK + 20} 0 0 {2 * TICK - 20} 0 0 0 0 0 0
cpu0 {TICK} 0 0 0 0 0 0 0 0 0
cpu1 {TICK} 0 0 0 0 0 0 0 0 0
cpu2 20 0 0 {TICK - 20} 0 0 0 0 0 0
cpu3 0 0 0 {TICK} 0 0 0 0 0 0
intr 1 2 3
"""


def test_only_the_cores_the_run_may_use_are_counted() -> None:
    """A SLURM job or a container pinned to cpu2-3 of a busy node: the other job's two
    cores are not ours to count, and the load average (the node's) is not read for them."""
    assert machine.parse_stat(STAT, {2, 3}) == (20, 2 * TICK, 2, 4)
    assert machine.parse_stat(STAT, None) == (2 * TICK + 20, 4 * TICK, 4, None)
    assert machine.parse_stat(STAT, {0, 1, 2, 3}) == (2 * TICK + 20, 4 * TICK, 4, None)
    start = Sample(0.0, 2.2, 0, 0, 2, 0.0, None, 4)
    pinned = machine.state(start, Sample(1.0, 2.2, 20, 2 * TICK, 2, 0.0, None, 4))
    assert pinned["others_cores"] == pytest.approx(0.2) and pinned["machine_cores"] == 4
    assert machine.load_reasons([pinned], 2, 2) == []
    short = {"seconds": 0.01, "load1": 4.2, "others_cores": None}  # too short: the load says
    assert machine.load_reasons([short], 2, 2) == ["others used up to 2.2 of 2 cores"]
    assert machine.load_reasons([{**short, "machine_cores": 4}], 2, 2) == []


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two cores this process may pin to",
)
def test_a_busy_process_on_another_core_does_not_disturb_a_pinned_run() -> None:
    """For real: a child spins on one core while a process pinned to another samples the
    machine. Read machine-wide, others' CPU holds the spinner's core; read on the pinned
    process's own core, it does not (whatever else the machine runs on both)."""
    first, second = sorted(os.sched_getaffinity(0))[:2]
    probe = (
        "import json, os, subprocess, sys, time\n"
        "from harness.core import machine\n"
        f"os.sched_setaffinity(0, {{{second}}})\n"
        "spin = subprocess.Popen([sys.executable, '-c', "
        f"'import os, time; os.sched_setaffinity(0, {{{first}}}); end = time.time() + 3\\n"
        "while time.time() < end: pass'], start_new_session=True)\n"
        "time.sleep(0.5)\n"  # the child is spinning
        "tree = machine.process_tree\n"
        "machine.process_tree = lambda: {k: v for k, v in tree().items() if k != spin.pid}\n"
        "stat = machine.parse_stat\n"
        "whole = lambda: stat(open('/proc/stat').read(), None)\n"
        "a, wa = machine.sample(), whole()\n"
        "time.sleep(1.0)\n"
        "b, wb = machine.sample(), whole()\n"
        "spin.kill()\n"
        "span = (wb[1] - wa[1]) / wb[2]\n"
        "print(json.dumps([machine.state(a, b)['others_cores'], (wb[0] - wa[0]) / span]))\n"
    )
    ours, machine_wide = _probe(probe)
    assert machine_wide - ours > 0.6, (ours, machine_wide)


def _probe(code: str) -> Any:
    """What a fresh Python running ``code`` (in the repository) prints, as JSON."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parents[1])  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
"""


def test_the_cgroups_cpu_stat_files_are_found_up_to_each_mount() -> None:
    """cgroup v1 beside v2 (this kind of VM), a pod's container under v2 (its limit may sit
    on the pod, a parent), and a mount whose root is the container's own cgroup."""
    v1 = "4:memory:/elsewhere\n1:cpu:/slurm/job7\n0::/\n"
    assert machine.cpu_stat_files(v1, HYBRID) == (
        Path("/sys/fs/cgroup/cpu/slurm/job7/cpu.stat"), Path("/sys/fs/cgroup/cpu/slurm/cpu.stat"),
        Path("/sys/fs/cgroup/cpu/cpu.stat"), Path("/sys/fs/cgroup/unified/cpu.stat"),
    )  # fmt: skip
    pod = "0::/kubepods/pod1/ctr\n"
    v2 = "29 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    assert [str(f) for f in machine.cpu_stat_files(pod, v2)] == [
        "/sys/fs/cgroup/kubepods/pod1/ctr/cpu.stat", "/sys/fs/cgroup/kubepods/pod1/cpu.stat",
        "/sys/fs/cgroup/kubepods/cpu.stat", "/sys/fs/cgroup/cpu.stat",
    ]  # fmt: skip
    own_root = "29 1 0:26 /docker/ab /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
    assert machine.cpu_stat_files("0::/docker/ab\n", own_root) == (Path("/sys/fs/cgroup/cpu.stat"),)
    assert machine.cpu_stat_files("0::/other\n", own_root) == ()  # not under that mount
    assert machine.cpu_stat_files("", HYBRID) == ()
    joint = "34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    assert machine.cpu_stat_files("3:cpu,cpuacct:/user.slice\n", joint) == (
        Path("/sys/fs/cgroup/cpu,cpuacct/user.slice/cpu.stat"),
        Path("/sys/fs/cgroup/cpu,cpuacct/cpu.stat"),
    )


def test_a_cpu_quota_that_held_the_run_back_disturbs_it(tmp_path: Path) -> None:
    v2, v1, bare = tmp_path / "v2.stat", tmp_path / "v1.stat", tmp_path / "none.stat"
    v2.write_text("usage_usec 900\nnr_throttled 3\nthrottled_usec 250000\n")
    v1.write_text("nr_periods 10\nnr_throttled 0\nthrottled_time 0\n")
    bare.write_text("usage_usec 900\n")
    files = [v2, v1, bare, tmp_path / "missing"]
    assert machine.throttled_seconds(files) == (0.25, 0.0, None, None)
    start = Sample(0.0, 0.1, None, None, 2, 0.0, throttled=(0.25, 0.0, None, None))
    end = Sample(2.0, 0.1, None, None, 2, 1.0, throttled=(0.25, 0.6, None, None))
    held = machine.state(start, end)
    assert held["throttled_s"] == pytest.approx(0.6)
    assert machine.load_reasons([held], 2, 2) == [
        "its cgroup's CPU quota held it back up to 30% of the time"
    ]
    assert machine.load_reasons([{**held, "throttled_s": 0.05}], 2, 2) == []
    assert "throttled_s" not in machine.state(start, replace(end, throttled=()))


@needs_cgroup
def test_a_real_cpu_quota_is_seen_holding_a_spinning_process_back() -> None:
    """For real: a process put in a new cgroup with a 20% CPU quota spins for a second;
    its machine state says it was held back most of it, and the rule flags it."""
    with quota_cgroup(0.2) as procs:
        probe = (
            "import json, os, time\n"
            f"open({str(procs)!r}, 'w').write(str(os.getpid()))\n"
            "from harness.core import machine\n"
            "a = machine.sample()\n"
            "end = time.time() + 1.0\n"
            "while time.time() < end: pass\n"
            "print(json.dumps(machine.state(a, machine.sample())))\n"
        )
        state = _probe(probe)
    assert state["throttled_s"] > 0.4 * state["seconds"], state
    reasons = machine.load_reasons([state], 2, 1)  # others' load may add its own reason
    assert any(r.startswith("its cgroup's CPU quota held it back up to") for r in reasons)


class _Sleeps(Steps):
    """Batches whose time is a sleep: epochs as steady as the scheduler allows, so that a
    verdict turns on the machine's state alone."""

    steps_per_epoch = 2

    def __init__(self) -> None:
        self.x = torch.ones(4, 3)

    def epoch(self, epoch: int):
        for _ in range(self.steps_per_epoch):
            time.sleep(0.04)
            yield self.x

    def loss(self, net: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return net(batch).pow(2).mean()


def _simulated_load(monkeypatch: pytest.MonkeyPatch, others: float, source: str) -> None:
    """Make the load source report ``others`` cores busy besides this process: through
    /proc/stat's counters, or (where there is none) through the load average."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(os, "getloadavg", lambda: (threads + others, 0.0, 0.0))
    monkeypatch.setattr(machine, "MIN_TICKS", 1)  # epochs of 80 ms still measured from ticks
    if source == "loadavg":
        monkeypatch.setattr(machine, "_proc_stat", lambda: (None, None, None, None))
        return

    def proc_stat() -> tuple[int, int, int, None]:
        now = time.perf_counter()
        own = sum(machine.process_tree().values())
        return int((own + others * now) * TICK), int(2 * now * TICK), 2, None

    monkeypatch.setattr(machine, "_proc_stat", proc_stat)


def _trained(monkeypatch: pytest.MonkeyPatch, others: float, source: str) -> dict:
    _simulated_load(monkeypatch, others, source)
    net = nn.Linear(3, 1)
    protocol = Protocol(dataset="none", epochs=3, batch_size=4, optimizer="sgd", lr=0.01)
    result = fit(net, make_optimizer(net, protocol), _Sleeps(), protocol,
                 device=torch.device("cpu"), show=False)  # fmt: skip
    assert len(result.epoch_machine) == len(result.epoch_times_s) == 3
    return result.timing()


@pytest.mark.parametrize("source", ["proc_stat", "loadavg"])
def test_training_under_load_is_disturbed_and_quiet_training_is_not(
    monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    loaded = _trained(monkeypatch, others=1.9, source=source)
    states = loaded["train"]["states"]
    verdict = machine.verdict([0.08] * 3, states, loaded["cores"], loaded["threads"])
    assert verdict.label == machine.DISTURBED
    assert (
        verdict.reasons[0].startswith("others used up to")
        and "of 2 cores (3 of 3)" in verdict.reasons[0]
    )
    if source == "proc_stat":  # measured from the counters, up to their ticks' rounding
        assert all(s["others_cores"] == pytest.approx(1.9, abs=0.3) for s in states)
    quiet = _trained(monkeypatch, others=0.0, source=source)
    verdict = machine.verdict([0.08] * 3, quiet["train"]["states"], 2, quiet["threads"])
    assert verdict == machine.Verdict(machine.QUIET)


def test_a_wide_spread_alone_is_disturbed_and_no_state_is_unknown() -> None:
    state = {"seconds": 1.0, "load1": 0.0, "others_cores": 0.0}
    assert machine.verdict([1.0, 1.0, 1.5], [state] * 3, 2, 2).reasons == ("IQR/median 0.25",)
    assert machine.verdict([1.0, 1.05, 1.1], [state] * 3, 2, 2).label == machine.QUIET
    assert machine.verdict([1.0], None, 2, 2).label == machine.UNKNOWN


def test_another_process_on_the_gpu_is_seen_through_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in nvidia-smi on PATH, answering as a driver does: this process and one other
    compute on the GPU, whose clocks run at 1410 of 1980 MHz with HW slowdown active."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        '#!/bin/sh\ncase "$*" in\n'
        f"  *query-compute-apps*) echo {os.getpid()}; echo 4242424 ;;\n"
        "  *) echo '1410, 1980, 97, 55, 0x0000000000000008' ;;\nesac\n"
    )
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    gpu = machine.gpu_sample("GPU-0", set(machine.process_tree()))
    assert gpu == {"sm_mhz": 1410.0, "max_sm_mhz": 1980.0, "util_pct": 97.0, "temp_c": 55.0,
                   "slowdown": 8, "other_processes": 1}  # fmt: skip
    reasons = machine.load_reasons([{"others_cores": 0.0, "gpu": gpu}], 2, 2)
    assert reasons == [
        "up to 1 other process(es) on the GPU",
        "GPU slowed itself (clock event reasons 0x8)",
    ]


def _loaded_state(others: float) -> dict:
    """One second on 2 cores, half a core of it ours and ``others`` cores not."""
    start = _sample(0.0, 0, 0, own=0.0)
    return machine.state(start, _sample(1.0, int((0.5 + others) * TICK), 2 * TICK, own=0.5))


@pytest.fixture
def table1_runs(tmp_path: Path) -> Path:
    """The golden Table 1 smoke records (made before states were recorded), two of them
    given the ``timing`` a cell now records: top-k under load, spatial FP quiet."""
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN / "runs" / "table1", runs / "table1")
    for path in (runs / "table1" / "smoke").glob("mnist.*_s2-*.json"):
        record = json.loads(path.read_text())
        if record["config"]["variant"] not in ("mnist.topk_s2", "mnist.fp_max_s2"):
            continue
        state = _loaded_state(1.5 if "topk" in path.name else 0.0)
        record["timing"] = timing_fields(
            record["epoch_times_s"], [state], record["test_times_s"], state
        ) | {"cores": 2, "threads": 2}
        path.write_text(json.dumps(record))
    return runs


def test_the_report_marks_the_disturbed_row_and_the_claims_it_weakens(table1_runs: Path) -> None:
    report = build_report(TABLE1, "smoke", RunStore(table1_runs))
    timing = dict(zip(report.frame["variant"], report.frame["timing"], strict=True))
    assert timing["mnist.topk_s2"] == machine.DISTURBED
    assert timing["mnist.fp_max_s2"] == machine.QUIET
    assert timing["mnist.baseline"] == machine.UNKNOWN  # an old record: never called quiet
    text = render_markdown(report)
    assert f"| Feature pooling (top-k) 50% {MARK} " in text
    labels = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    assert "Feature pooling (spatial pooling) 50%" in labels and "Baseline" in labels
    assert sum(MARK in label for label in labels) == 2  # top-k's row, in both tables
    assert "others used up to 1.5 of 2 cores" in text
    ratio = [c for c in report.checks if c.claim.kind == "ratio"]
    assert all("disturbed: mnist.topk_s2 (seed 0)" in c.verdict_text() for c in ratio)
    header = render_csv(report).splitlines()[0].split(",")  # appended after the old last column
    assert header[-4:] == ["n_seeds", "timing", "timing_others_cores", "timing_why"]


def _timed(setting: str, label: str = machine.QUIET) -> dict[int, Timed]:
    return {0: Timed(setting, label), 1: Timed(setting, label)}


def test_a_time_ratio_is_marked_when_its_sides_were_timed_apart() -> None:
    claim = Claim("a is slower", "-", "ratio", ("a", "b"), ("train_time_s",), low=1.0)
    measured = {(None, "a"): {"train_time_s": {0: 2.0, 1: 2.2}},
                (None, "b"): {"train_time_s": {0: 1.0, 1: 1.1}}}  # fmt: skip
    alike = {(None, v): {"train_time_s": _timed("host, cpu, 2 threads")} for v in "ab"}
    assert check(claim, measured, (None,), "paper", alike).caveat == ""
    apart = {**alike, (None, "b"): {"train_time_s": _timed("host, cpu, 1 threads")}}
    found = check(claim, measured, (None,), "paper", apart)
    assert found.caveat == "timed on different machines or thread counts: seeds 0, 1"
    assert found.verdict_text().startswith("supported; times not known to be comparable")
    assert check(claim, measured, (None,), "paper").caveat == ""  # no conditions: not a time


def test_results_name_each_cells_timing(table1_runs: Path) -> None:
    frame = results("table1", table1_runs, "smoke").set_index("variant")
    assert frame.loc["mnist.topk_s2", "train_timing"] == machine.DISTURBED
    assert frame.loc["mnist.topk_s2", "train_timing_why"].startswith("others used up to 1.5")
    assert frame.loc["mnist.fp_max_s2", "test_timing"] == machine.QUIET
    assert frame.loc["mnist.baseline", "train_timing"] == machine.UNKNOWN


def test_a_checkpoint_keeps_the_epochs_states(tmp_path: Path) -> None:
    """A resumed cell's epochs stay judged: their states travel in the checkpoint."""
    net = nn.Linear(3, 1)
    states = [_loaded_state(0.0), _loaded_state(1.5)]
    save_checkpoint(tmp_path / "c.ckpt", epoch=2, model=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
                    history=[], epoch_times_s=[1.0, 1.0], epoch_machine=states)  # fmt: skip
    assert load_checkpoint(tmp_path / "c.ckpt", net)["epoch_machine"] == states


def test_a_slow_first_epoch_is_a_warm_up_not_a_disturbance() -> None:
    """From 3 epochs on the first (caches, allocator, compilation) is left out of the spread:
    the median shrugs it off, an IQR of three would not."""
    quiet = {"seconds": 1.0, "load1": 0.0, "others_cores": 0.0}

    def record(epochs: list[float]) -> dict:
        timing = timing_fields(epochs, [quiet] * len(epochs), [], None)
        return {"config": {"seed": 0}, "epoch_times_s": epochs, "timing": timing}

    assert record_verdict(record([3.0, 1.0, 1.01]), "train_time_s").label == machine.QUIET
    found = record_verdict(record([1.0, 1.0, 1.5, 1.0]), "train_time_s")
    assert found.label == machine.DISTURBED and found.reasons[0].startswith("IQR/median")
    assert record_verdict(record([3.0, 1.0]), "train_time_s").label == machine.DISTURBED
    assert record_verdict(record([1.0]), "test_time_s").label == machine.UNKNOWN  # no test state


def test_a_cell_that_shared_its_device_is_disturbed_even_without_states() -> None:
    old = {"config": {"seed": 0}, "epoch_times_s": [1.0], "contention": 3}
    found = record_verdict(old, "train_time_s")
    assert found == machine.Verdict(machine.DISTURBED, ("2 other cell(s) shared its device",))
    assert record_verdict({**old, "contention": 1}, "train_time_s").label == machine.UNKNOWN
