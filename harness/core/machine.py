"""The machine's state while something was timed, and the rule that calls a time disturbed.

A time is only as good as the machine was quiet while it ran: Table 1's demo once printed
1.13 s per epoch for one row next to 9.08 s for a similar one, the second taken while
other work held the CPU. So every timed phase (each training epoch, the test passes) is
bracketed by two :class:`Sample` s, and :func:`state` turns a pair into what a reader
needs: the load average, the CPU other processes used meanwhile on the cores this process
may run on (from ``/proc/stat``, less this process's and its children's own time: no
psutil; a SLURM job or a container pinned to some of a node's cores is not disturbed by
the jobs on the others), how long its cgroup's CPU quota held it back (``cpu.stat``) and,
on a GPU, its clocks, utilisation and whether another process computed on it
(``nvidia-smi``, where present).

:func:`verdict` applies one rule, stated in every report that shows times: a phase is
*disturbed* when its replicates (epochs, :func:`steady`; test passes) spread by more than
:data:`NOISY` of their median (IQR / median, the threshold ``harness bench`` flags
``noisy`` with), when other processes used more than the cores the run left free plus
:data:`SLACK_CORES`, when a CPU quota held it back more than :data:`THROTTLED` of the
time, or when another process used its GPU or the GPU slowed itself (thermal or power
brake). A phase with no recorded state (records made before states were) is *unknown*,
never quiet.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOISY = 0.1  # IQR / median above this: a time is not to be trusted (bench's threshold too)
SLACK_CORES = 0.5  # others may use this much CPU beyond the free cores before a time is flagged
# a time is flagged when its cgroup's CPU quota held the process back for more than this
# share of it (a container's --cpus, a pod's CPU limit)
THROTTLED = 0.05
# /proc/stat counts in clock ticks (10 ms): a span shorter than this many ticks per core is
# too short to measure others' CPU from it, and the load average stands in
MIN_TICKS = 20
# nvidia-smi's clock event reasons that mean the GPU slowed itself: HW slowdown, SW and HW
# thermal slowdown, HW power brake (idle, application clocks and the power cap are normal)
GPU_SLOWDOWN = 0x08 | 0x20 | 0x40 | 0x80
QUIET, DISTURBED, UNKNOWN = "quiet", "disturbed", "unknown"

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Sample:
    """One reading of the machine: wall clock, load, CPU ticks, this process tree's CPU."""

    at: float  # time.perf_counter()
    load1: float | None  # 1-minute load average
    busy: int | None  # ticks our cores spent on anything but idle and iowait (steal counts)
    total: int | None  # ticks our cores spent, idle included
    cores: int | None  # cores counted: those this process may run on
    own: float  # CPU seconds of this process and its children, live or reaped
    gpu: dict[str, Any] | None = None
    machine_cores: int | None = None  # the machine's, where more than ``cores``
    # per cgroup (this process's and its ancestors'), seconds its CPU quota has held it back
    throttled: tuple[float | None, ...] = ()


def cpus() -> int:
    """The cores this process may run on (its affinity), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_quota() -> float | None:
    """The CPUs' worth of time per period a cgroup CPU quota grants this process (a
    container's ``--cpus``, a pod's limit; the lowest of its cgroup's and its parents'),
    or None where none is set."""
    return quota_cpus(path.parent for path in _cpu_stat_files())


def quota_cpus(folders: Iterable[Path]) -> float | None:
    """:func:`cpu_quota` from the cgroup ``folders`` (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``)."""
    return min(filter(None, map(_quota, folders)), default=None)


def _quota(folder: Path) -> float | None:
    try:
        if (folder / "cpu.max").is_file():
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        else:
            quota = (folder / "cpu.cfs_quota_us").read_text()
            period = (folder / "cpu.cfs_period_us").read_text()
        quota, period = quota.strip(), period.strip()
    except (OSError, ValueError):
        return None
    if not (quota.isdigit() and period.isdigit()) or int(period) == 0:
        return None  # "max" (v2) or -1 (v1): no quota
    return int(quota) / int(period)


def cpu_budget() -> int:
    """The CPUs this process can keep busy: its cores (:func:`cpus`), or fewer where a
    cgroup quota grants less time (its whole part, at least 1, as Ray counts it)."""
    quota = cpu_quota()
    return cpus() if quota is None else max(1, min(cpus(), int(quota + 1e-9)))


def torch_threads(default: int) -> int:
    """Torch's CPU threads for a run that asked for no number, from torch's ``default``
    (its cores, or ``OMP_NUM_THREADS``): fewer where a CPU quota grants fewer CPUs, since
    torch reads no quota and threads beyond it only wait for the next period (an
    explicit ``OMP_NUM_THREADS`` is kept)."""
    return default if "OMP_NUM_THREADS" in os.environ else min(default, cpu_budget())


def _proc_stat() -> tuple[int | None, int | None, int | None, int | None]:
    """(busy ticks, all ticks, cores) of the cores this process may run on, and the
    machine's cores where it has more, from /proc/stat; Nones where there is none."""
    try:
        text = Path("/proc/stat").read_text()
    except OSError:
        return None, None, None, None
    try:
        ours = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        ours = None
    return parse_stat(text, ours)


def parse_stat(
    text: str, ours: set[int] | None
) -> tuple[int | None, int | None, int | None, int | None]:
    """:func:`_proc_stat` from /proc/stat's ``text`` and the cores ``ours`` (None: all):
    the per-core lines of our cores summed, else the whole machine's first line."""
    lines = text.splitlines()
    per_core = {int(ln[3:].split()[0]): ln for ln in lines if ln[:3] == "cpu" and ln[3:4].isdigit()}
    mine = [per_core[c] for c in sorted(per_core.keys() & (ours or per_core.keys()))]
    busy = total = 0
    for line in mine or lines[:1]:
        ticks = [int(v) for v in line.split()[1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        total += sum(ticks[:8])  # guest time is already inside user time
        busy += sum(ticks[:8]) - idle
    cores = len(mine) or len(per_core) or None
    return busy, total, cores, len(per_core) if len(per_core) > len(mine) > 0 else None


@functools.cache
def _cpu_stat_files() -> tuple[Path, ...]:
    try:
        cgroup = Path("/proc/self/cgroup").read_text()
        mounts = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return ()
    return cpu_stat_files(cgroup, mounts)


def cpu_stat_files(cgroup: str, mountinfo: str) -> tuple[Path, ...]:
    """The ``cpu.stat`` files of this process's cgroup and its ancestors up to each mount
    that accounts CPU (cgroup v2, or v1 with the cpu controller), from the texts of
    /proc/self/cgroup and /proc/self/mountinfo: a quota set on a parent (a pod's limit
    above its container) throttles the process too."""
    found = []
    member = [line.split(":", 2) for line in cgroup.splitlines() if line.count(":") >= 2]
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        root, mount, fstype, options = fields[3], fields[4], fields[dash + 1], fields[-1]
        for hierarchy, controllers, path in member:
            v2 = fstype == "cgroup2" and hierarchy == "0"
            v1 = (
                fstype == "cgroup"
                and "cpu" in controllers.split(",")
                and "cpu" in options.split(",")
            )
            if not (v2 or v1) or not (path + "/").startswith(root.rstrip("/") + "/"):
                continue
            here = Path(mount, path[len(root.rstrip("/")) :].lstrip("/"))
            while True:
                found.append(here / "cpu.stat")
                if here == Path(mount):
                    break
                here = here.parent
    return tuple(found)


def throttled_seconds(files: Sequence[Path]) -> tuple[float | None, ...]:
    """How long each of ``files`` (cpu.stat) says its cgroup was throttled so far, in
    seconds (v2's ``throttled_usec``, v1's ``throttled_time`` in ns); None where it
    does not say."""
    return tuple(_throttled(path) for path in files)


def _throttled(path: Path) -> float | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for key, value in (line.split() for line in lines if len(line.split()) == 2):
        if key in _THROTTLE_UNITS and value.isdigit():
            return int(value) / _THROTTLE_UNITS[key]
    return None


_THROTTLE_UNITS = {"throttled_usec": 1e6, "throttled_time": 1e9}


def _stat_fields(pid: str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def process_tree() -> dict[int, float]:
    """This process and its live descendants: pid -> CPU seconds, its reaped children's
    included (so a finished DataLoader worker still counts as ours)."""
    me = os.getpid()
    parent, cpu = {}, {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit() and (fields := _stat_fields(entry)) is not None:
            parent[int(entry)] = int(fields[1])
            cpu[int(entry)] = sum(int(v) for v in fields[11:15]) / _TICK
    if me not in cpu:  # no /proc: this process's own times
        t = os.times()
        return {me: t.user + t.system + t.children_user + t.children_system}
    tree, grew = {me}, True
    while grew:
        found = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= found
        grew = bool(found)
    return {p: cpu[p] for p in tree}


def sample(gpu: str | None = None) -> Sample:
    """The machine now; ``gpu``: the UUID of the GPU the work runs on (None: no GPU)."""
    busy, total, cores, machine_cores = _proc_stat()
    try:
        load1: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):
        load1 = None
    tree = process_tree()
    gpu_state = gpu_sample(gpu, set(tree)) if gpu else None
    return Sample(time.perf_counter(), load1, busy, total, cores, sum(tree.values()), gpu_state,
                  machine_cores, throttled_seconds(_cpu_stat_files()))  # fmt: skip


_SMI_FIELDS = ("clocks.sm", "clocks.max.sm", "utilization.gpu", "temperature.gpu")
_SMI_REASONS = ("clocks_event_reasons.active", "clocks_throttle_reasons.active")


def _smi(*args: str) -> list[str] | None:
    """Lines nvidia-smi prints, or None (no nvidia-smi, an error, 5 s without answer)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", *args], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def gpu_sample(uuid: str, ours: set[int]) -> dict[str, Any] | None:
    """The GPU's clocks (MHz), utilisation (%), temperature, slowdown reasons and the
    other processes computing on it (None where nvidia-smi cannot tell: absent, or a
    container whose process ids it does not show)."""
    state: dict[str, Any] | None = None
    for reasons in _SMI_REASONS:  # the field was renamed; older drivers know the other
        query = f"--query-gpu={','.join((*_SMI_FIELDS, reasons))}"
        lines = _smi(f"--id={uuid}", query, "--format=csv,noheader,nounits")
        if lines:
            values = [v.strip() for v in lines[0].split(",")]
            state = dict(zip(("sm_mhz", "max_sm_mhz", "util_pct", "temp_c"),
                             map(_number, values), strict=False))  # fmt: skip
            state["slowdown"] = int(values[-1], 16) if values[-1].startswith("0x") else None
            break
    if state is None:
        return None
    pids = {int(p) for p in _smi(f"--id={uuid}", "--query-compute-apps=pid",
                                 "--format=csv,noheader") or [] if p.isdigit()}  # fmt: skip
    state["other_processes"] = len(pids - ours) if pids & ours else None
    return state


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def state(start: Sample, end: Sample) -> dict[str, Any]:
    """What the machine did between two samples, JSON-ready: seconds, the higher load
    average, the cores other processes kept busy on average on ours (None when the span
    is too short for /proc/stat's ticks or there is none), the machine's cores where it
    has more than ours, and the GPU at the end."""
    out: dict[str, Any] = {"seconds": end.at - start.at, "load1": _most(start.load1, end.load1)}
    others = None
    if None not in (start.busy, end.busy, start.total, end.total) and end.cores:
        ticks = end.total - start.total  # type: ignore[operator]
        if ticks >= MIN_TICKS * end.cores:
            busy_s = (end.busy - start.busy) / _TICK  # type: ignore[operator]
            others = max(0.0, busy_s - (end.own - start.own)) / (ticks / _TICK / end.cores)
    out["others_cores"] = others
    if end.machine_cores:  # the load average is the machine's, not our cores'
        out["machine_cores"] = end.machine_cores
    held = [b - a for a, b in zip(start.throttled, end.throttled, strict=False)
            if a is not None and b is not None]  # fmt: skip
    if held:  # the cgroup that held it back longest
        out["throttled_s"] = max(0.0, *held)
    if end.gpu is not None:
        out["gpu"] = end.gpu
    return out


def _most(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def spread(times: Sequence[float]) -> float | None:
    """IQR / median of replicate times (numpy's linear quartiles), None below two."""
    values = sorted(float(t) for t in times)
    if len(values) < 2 or values[len(values) // 2] <= 0:
        return None
    q = [_quantile(values, p) for p in (0.25, 0.5, 0.75)]
    return (q[2] - q[0]) / q[1]


def steady(epoch_times: Sequence[float]) -> list[float]:
    """The epochs whose spread says how steady training ran: from 3 epochs on, all but the
    first, which also warms caches, the allocator and any compilation (the median time
    shrugs it off; an IQR of three does not)."""
    return list(epoch_times[1:] if len(epoch_times) >= 3 else epoch_times)


def _quantile(values: list[float], p: float) -> float:
    pos = p * (len(values) - 1)
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


@dataclass(frozen=True)
class Verdict:
    """Whether a timed phase was disturbed (quiet, disturbed, unknown) and why."""

    label: str
    reasons: tuple[str, ...] = ()


def load_reasons(states: Sequence[Mapping[str, Any]], cores: int, threads: int) -> list[str]:
    """Why the machine was not quiet over ``states`` (one per epoch, or the test's): others'
    CPU beyond the cores the run left free (by the load average less the run's threads
    where /proc/stat could not tell, unless the run had only some of the machine's cores),
    its cgroup's CPU quota holding it back, another process on the GPU, or a GPU that
    slowed itself; each reason once, with the worst case and how many states had it."""
    free = max(cores - threads, 0) + SLACK_CORES
    busy, held, shared, slowed = [], [], [], []
    for s in states:
        if (s.get("seconds") or 0) > 0 and (s.get("throttled_s") or 0) > THROTTLED * s["seconds"]:
            held.append(s["throttled_s"] / s["seconds"])
        others = s.get("others_cores")
        if others is None and s.get("load1") is not None and not s.get("machine_cores"):
            others = s["load1"] - threads
        if others is not None and others > free:
            busy.append(others)
        gpu = s.get("gpu") or {}
        if gpu.get("other_processes"):
            shared.append(gpu["other_processes"])
        if (gpu.get("slowdown") or 0) & GPU_SLOWDOWN:
            slowed.append(gpu["slowdown"])
    of = f" ({len(busy)} of {len(states)})" if len(states) > 1 else ""
    reasons = [f"others used up to {max(busy):.1f} of {cores} cores{of}"] if busy else []
    if held:
        reasons.append(f"its cgroup's CPU quota held it back up to {max(held):.0%} of the time")
    if shared:
        reasons.append(f"up to {max(shared)} other process(es) on the GPU")
    if slowed:
        reasons.append(f"GPU slowed itself (clock event reasons {slowed[0]:#x})")
    return reasons


def verdict(
    times: Sequence[float], states: Sequence[Mapping[str, Any]] | None, cores: int, threads: int
) -> Verdict:
    """The rule of the module docstring on one phase: its replicate ``times`` and the
    machine's ``states`` while they ran (None: not recorded, so unknown)."""
    if states is None or not all(isinstance(s, Mapping) for s in states) or not states:
        return Verdict(UNKNOWN, ("machine state not recorded",))
    reasons = load_reasons(states, cores, threads)
    wide = spread(times)
    if wide is not None and wide > NOISY:
        reasons.insert(0, f"IQR/median {wide:.2f}")
    return Verdict(DISTURBED if reasons else QUIET, tuple(reasons))


__all__ = [
    "DISTURBED", "NOISY", "QUIET", "SLACK_CORES", "THROTTLED", "UNKNOWN", "Sample", "Verdict",
    "cpu_stat_files", "cpus", "load_reasons", "parse_stat", "sample", "spread", "state",
    "steady", "throttled_seconds", "verdict",
]  # fmt: skip
