"""Whether a report's times can be trusted, row by row, and the conditions claims compare.

Each record keeps, per timed phase (training epochs, test passes), the spread of its
replicates and the machine's state while they ran (``timing``, written by
:mod:`harness.train.measure`); :func:`harness.core.machine.verdict` says whether a phase
was quiet, disturbed or unknown. A row is disturbed when any phase behind one of its
time columns was, at any seed; unknown when none was but some phase has no recorded
state (records older than the ``timing`` field); quiet otherwise. The report marks a
disturbed row's label with :data:`MARK` and states the rule once in its notes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from harness.core import machine
from harness.stats.claims import Timed, Timing

if TYPE_CHECKING:
    import pandas as pd

MARK = "‡"  # beside a row label: a time in the row was disturbed
# the time columns, and the phase and replicates behind each
PHASES = {
    "train_time_s": ("train", "epoch_times_s"),
    "test_time_s": ("test", "test_times_s"),
    "time_per_image_s": ("test", "test_times_s"),
}
COLUMNS = ("timing", "timing_others_cores", "timing_why")  # appended to the report's CSV
RULE = (
    f"{MARK} marks a row whose times were disturbed at some seed: its epochs (from 3, all but "
    f"the first, a warm-up) or test passes spread by more than {machine.NOISY:.0%} of their median (IQR/median, the threshold "
    "`bench` flags noisy), other processes kept busy more than the cores the run left free "
    f"plus {machine.SLACK_CORES:g} (on the cores it may run on, from /proc/stat; else the load "
    "average, where it had every core), its cgroup's CPU quota held it back more than "
    f"{machine.THROTTLED:.0%} of the time, other cells "
    "shared its device, or another process used its GPU or the GPU slowed itself; the CSV's `timing` column says quiet, "
    "disturbed or unknown per row, `timing_why` why"
)


def record_verdict(record: dict[str, Any], column: str) -> machine.Verdict:
    """The verdict on the phase behind ``column`` in one record: disturbed too when other
    cells shared its device (its ``contention``), which a record knows even without the
    machine's state; otherwise unknown for a record made before states were recorded, or
    one whose ``timing`` is malformed."""
    found = _machine_verdict(record, column)
    shared = record.get("contention")
    if not isinstance(shared, int) or shared <= 1:
        return found
    reasons = [r for r in found.reasons if found.label == machine.DISTURBED]
    return machine.Verdict(
        machine.DISTURBED, (f"{shared - 1} other cell(s) shared its device", *reasons)
    )


def _machine_verdict(record: dict[str, Any], column: str) -> machine.Verdict:
    phase, samples = PHASES[column]
    timing = record.get("timing")
    if not isinstance(timing, dict) or not isinstance(timing.get(phase), dict):
        return machine.Verdict(machine.UNKNOWN, ("machine state not recorded",))
    times = [t for t in record.get(samples) or [] if isinstance(t, int | float)]
    times = machine.steady(times) if phase == "train" else times
    cores, threads = (v if isinstance(v := timing.get(k), int) and v > 0 else 1
                      for k in ("cores", "threads"))  # fmt: skip
    states = timing[phase].get("states")
    return machine.verdict(times, states if isinstance(states, list) else None, cores, threads)


def cell_timing(record: dict[str, Any]) -> dict[str, str]:
    """One cell's verdict per phase, for ``harness.results``: ``train_timing`` and
    ``test_timing`` (quiet, disturbed, unknown), and why where disturbed."""
    out = {}
    for column in ("train_time_s", "test_time_s"):
        found = record_verdict(record, column)
        phase = PHASES[column][0]
        out[f"{phase}_timing"] = found.label
        out[f"{phase}_timing_why"] = "; ".join(found.reasons) * (found.label == machine.DISTURBED)
    return out


def _worst(labels: Iterable[str]) -> str:
    labels = set(labels)
    return next((x for x in (machine.DISTURBED, machine.UNKNOWN) if x in labels), machine.QUIET)


def row_timing(records: list[dict[str, Any]], columns: Iterable[str]) -> dict[str, Any]:
    """A row's ``timing`` columns: its label over every record and time column, the most
    CPU other processes used while any of its phases ran, and why it is disturbed."""
    timed = [c for c in columns if c in PHASES]
    if not timed or not records:
        return {}
    why, labels, others = [], [], []
    for record in records:
        for phase, column in {PHASES[c][0]: c for c in timed}.items():
            found = record_verdict(record, column)
            labels.append(found.label)
            if found.label == machine.DISTURBED:
                why.append(f"{phase} seed {record['config']['seed']}: {', '.join(found.reasons)}")
            states = ((record.get("timing") or {}).get(phase) or {}).get("states") or []
            others += [s.get("others_cores") for s in states if isinstance(s, dict)]
    known = [x for x in others if isinstance(x, int | float)]
    return {"timing": _worst(labels), "timing_others_cores": max(known, default=math.nan),
            "timing_why": "; ".join(dict.fromkeys(why))}  # fmt: skip


def marked(labels: list[str], frame: pd.DataFrame) -> list[str]:
    """Row labels with :data:`MARK` on the disturbed rows."""
    if "timing" not in frame:
        return labels
    return [f"{label} {MARK}" if t == machine.DISTURBED else label
            for label, t in zip(labels, frame["timing"], strict=True)]  # fmt: skip


def timing_notes(frame: pd.DataFrame) -> list[str]:
    """The report's sentences on its rows' timing: which were disturbed and why, which
    cannot be judged, and the rule."""
    if "timing" not in frame:
        return []
    rows = {label: frame.loc[frame["timing"] == label, "row"].tolist()
            for label in (machine.DISTURBED, machine.UNKNOWN, machine.QUIET)}  # fmt: skip
    every = frame["timing"].notna().sum()
    notes = []
    if rows[machine.DISTURBED]:
        why = frame.loc[frame["timing"] == machine.DISTURBED, ["row", "timing_why"]]
        notes.append("times disturbed for " + "; ".join(f"{r} ({w})" for r, w in why.values))
    if rows[machine.UNKNOWN]:
        which = (
            "every row" if len(rows[machine.UNKNOWN]) == every else ", ".join(rows[machine.UNKNOWN])
        )
        notes.append(
            f"the machine's state while {which} was timed is not recorded (records made "
            "before it was): whether those times were disturbed is unknown"
        )
    if rows[machine.QUIET] and len(rows[machine.QUIET]) == every:
        notes.append("every row was timed on a quiet machine")
    return [*notes, RULE] if notes else []


def claim_timing(records: list[dict[str, Any]], columns: Iterable[str]) -> Timing:
    """The conditions each row's times were taken under, per test set, time column and
    seed, for claims that compare rows' times: where (host, device, threads) and the
    worst verdict over the seed's records (a denoiser's noise levels)."""
    out: dict[tuple[str | None, str], dict[str, dict[int, Timed]]] = {}
    for column in (c for c in columns if c in PHASES):
        grouped: dict[tuple[str | None, str, int], list[dict[str, Any]]] = {}
        for r in records:
            c = r["config"]
            grouped.setdefault((c.get("test_set"), c["variant"], c["seed"]), []).append(r)
        for (block, variant, seed), mine in grouped.items():
            settings = sorted({f"{r.get('host')}, {r['env'].get('device_name')}, "
                               f"{r.get('threads')} threads" for r in mine})  # fmt: skip
            label = _worst(record_verdict(r, column).label for r in mine)
            out.setdefault((block, variant), {}).setdefault(column, {})[seed] = Timed(
                " | ".join(settings), label
            )
    return out
