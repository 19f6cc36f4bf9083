"""The paper's claims as data, checked on the run records that exist.

A claim names rows, columns and a band the measured quantity must lie in; its verdict
comes from the quantity's 95% interval over the seeds the rows share:

* ``greater``: ``rows[0] - rows[1]``, seed by seed, in ``(low, high)`` (default: above 0),
  at every column and every test set of the table;
* ``ratio``: ``rows[0] / rows[1]``, seed by seed (interval of the geometric mean);
* ``gain``: within the one row, ``columns[0] - columns[1]``;
* ``best``: ``rows[0]`` above each of ``rows[1:]``; the part shown is the closest one.

Verdicts: *supported* (every interval inside the band), *contradicted* (some interval
outside it), *inconclusive* (an interval spans an edge, or fewer than 2 seeds), *not
run* (a row has no records), and *not evidence (demo/smoke)* for those profiles, whose
numbers are shown all the same. An inconclusive verdict from 2 or more seeds says how many
seeds would decide it: those with which the interval would clear the edge it spans with
80% power, if the observed mean and spread were the truth
(:func:`harness.stats.intervals.seeds_needed`).

A claim that compares rows' times (top-k over spatial FP) is only as sound as the times
were taken alike: given each row's :class:`Timed` conditions per seed, a part whose two
sides were not both quiet, or were timed on different machines or thread counts, carries
a caveat that its verdict shows (its numbers are still computed and shown).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from harness.core.machine import DISTURBED, UNKNOWN
from harness.stats.intervals import Interval, finite, interval, seeds_needed, seeds_text

KINDS = ("greater", "ratio", "gain", "best")
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
NOT_RUN, NOT_EVIDENCE = "not run", "not evidence (demo/smoke)"
NOT_EVIDENCE_PROFILES = ("demo", "smoke")
NOT_COMPARABLE = "times not known to be comparable"

# (test set or None, variant) -> column -> seed -> value: what a report measured
Measured = Mapping[tuple[str | None, str], Mapping[str, Mapping[int, float]]]


@dataclass(frozen=True)
class Timed:
    """How one seed of a row was timed: where (host, device, threads) and whether the
    machine was quiet (``harness.core.machine``: quiet, disturbed or unknown)."""

    setting: str
    label: str


# (test set or None, variant) -> time column -> seed -> its conditions
Timing = Mapping[tuple[str | None, str], Mapping[str, Mapping[int, Timed]]]


@dataclass(frozen=True)
class Claim:
    """One checkable statement of the paper and the sentence or table cells it rests on."""

    text: str
    source: str
    kind: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    low: float = 0.0
    high: float = math.inf

    def __post_init__(self) -> None:
        needed = {"greater": 2, "ratio": 2, "gain": 1}.get(self.kind, 2)
        if self.kind not in KINDS or len(self.rows) < needed or not self.columns:
            raise ValueError(f"malformed claim {self.text!r}: kind {self.kind}, rows {self.rows}")
        if self.kind == "gain" and (len(self.rows) != 1 or len(self.columns) != 2):
            raise ValueError(f"a gain claim takes one row and two columns: {self.text!r}")


@dataclass(frozen=True)
class Part:
    """The claim's quantity at one column (and test set): its interval over shared seeds."""

    label: str
    estimate: Interval
    verdict: str
    seeds_needed: float = math.nan  # for an inconclusive part: seeds that would decide it
    caveat: str = ""  # why its times were not taken under comparable conditions


@dataclass(frozen=True)
class Check:
    """A claim checked on records: the verdict, and the verdict the numbers alone give."""

    claim: Claim
    verdict: str
    on_the_numbers: str
    parts: tuple[Part, ...]
    reason: str = ""

    @property
    def n(self) -> int:
        return min((p.estimate.n for p in self.parts), default=0)

    @property
    def caveat(self) -> str:
        """Why the times a part compares were not taken alike (empty when they were)."""
        return "; ".join(dict.fromkeys(p.caveat for p in self.parts if p.caveat))

    @property
    def seeds_needed(self) -> float:
        """Seeds that would decide an inconclusive claim: every undecided part must be
        decided for it to be supported (NaN when decided, or not said)."""
        if self.on_the_numbers != INCONCLUSIVE or self.n < 2:
            return math.nan
        return _most([p.seeds_needed for p in self.parts if p.verdict == INCONCLUSIVE])

    def verdict_text(self) -> str:
        """The verdict with its reason, or for demo and smoke what the numbers alone say;
        an inconclusive one from 2 or more seeds with the seeds that would decide it."""
        numbers = self.on_the_numbers
        if numbers == INCONCLUSIVE and self.n >= 2:
            numbers += f" at n={self.n}; {seeds_text(self.seeds_needed)}"
        if self.verdict == NOT_EVIDENCE:
            text = f"{self.verdict}; on these numbers: {numbers}"
        elif self.verdict == INCONCLUSIVE and self.n >= 2:
            text = f"{numbers} ({self.reason})"
        else:
            text = self.verdict + (f" ({self.reason})" if self.reason else "")
        return text + (f"; {NOT_COMPARABLE}: {self.caveat}" if self.caveat else "")

    def measurement(self) -> str:
        """Our numbers in words: estimate [95% interval] per part, and n."""
        if not self.parts:
            return "–"
        ratio = self.claim.kind == "ratio"
        shown = "; ".join(f"{p.label}: {_number(p.estimate, ratio)}" for p in self.parts)
        return f"{shown} (n = {self.n})"

    def to_decide(self, table: str, profile: str) -> str:
        """What would decide a claim that is not decided: the records it lacks, evidence
        from the paper profile, or the seeds per row that would narrow its intervals
        enough (if the spread stays as measured). Empty for a decided claim."""
        run = f"python -m harness run {table}"
        if self.verdict == NOT_RUN:
            return f"records for every row it names: `{run} --profile {profile}`"
        if self.on_the_numbers != INCONCLUSIVE and self.verdict != NOT_EVIDENCE:
            return ""
        seeds = seeds_to_decide(self) if self.on_the_numbers == INCONCLUSIVE else self.n
        if self.verdict == NOT_EVIDENCE:
            return f"the paper profile (demo and smoke numbers are not evidence): `{run} --profile paper --seeds {max(seeds or 2, 2)}`"
        if self.n < 2:
            return f"2 or more seeds per row: `{run} --profile {profile} --seeds 2`"
        if seeds is None:
            return (
                f"the estimate sits at the claim's threshold (n = {self.n}): more seeds are "
                "unlikely to decide it"
            )
        return (
            f"about {seeds} seeds per row (now {self.n}), if the spread stays as measured: "
            f"`{run} --profile {profile} --seeds {seeds}`"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim.text,
            "source": self.claim.source,
            "kind": self.claim.kind,
            "rows": list(self.claim.rows),
            "columns": list(self.claim.columns),
            "band": [self.claim.low, self.claim.high],
            "verdict": self.verdict,
            "on_the_numbers": self.on_the_numbers,
            "reason": self.reason,
            "n": self.n,
            "seeds_needed": self.seeds_needed,
            "timing_caveat": self.caveat,
            "parts": [
                {"label": p.label, "estimate": p.estimate.mean, "ci95_low": p.estimate.low,
                 "ci95_high": p.estimate.high, "n": p.estimate.n, "verdict": p.verdict,
                 "seeds_needed": p.seeds_needed, "timing_caveat": p.caveat}
                for p in self.parts
            ],
            "measurement": self.measurement(),
        }  # fmt: skip


def seeds_to_decide(check: Check) -> int | None:
    """The fewest seeds per row with which a paired t-test would decide every undecided
    part with 80% power, if the mean and spread stayed as measured
    (:func:`harness.stats.intervals.seeds_needed`); None when no number can be named (fewer
    than 2 seeds, an estimate on the threshold, or more than ``intervals.MAX_SEEDS``)."""
    needed = check.seeds_needed
    return int(needed) if math.isfinite(needed) else None


def _number(x: Interval, ratio: bool) -> str:
    fmt = "{:.3g}x" if ratio else "{:+.4g}"
    text = fmt.format(x.mean)
    return text if x.n < 2 else f"{text} [{fmt.format(x.low)}, {fmt.format(x.high)}]"


def _to_decide(diffs: Sequence[float], x: Interval, low: float, high: float) -> float:
    """Seeds with which the interval of ``diffs`` (mean ``x``) would clear the band edges
    it spans: both, when the mean lies inside the band; else the one nearest the mean.
    NaN when ``x`` is decided or rests on fewer than 2 seeds."""
    if x.n < 2 or _band_verdict(x, low, high) != INCONCLUSIVE:
        return math.nan
    spanned = [e for e in (low, high) if math.isfinite(e) and x.low <= e <= x.high]
    if spanned and not low < x.mean < high:
        spanned = [min(spanned, key=lambda e: abs(e - x.mean))]
    return _most([seeds_needed(diffs, e) for e in spanned])


def _most(needed: Sequence[float]) -> float:
    """The seeds that decide every one of several undecided quantities: NaN when one of
    them cannot be decided (or there is none)."""
    return math.nan if not needed or any(math.isnan(s) for s in needed) else max(needed)


def _band_verdict(x: Interval, low: float, high: float) -> str:
    if x.n < 2:
        return INCONCLUSIVE
    if x.low > low and x.high < high:
        return SUPPORTED
    if x.high <= low or x.low >= high:
        return CONTRADICTED
    return INCONCLUSIVE


def _differences(a: Mapping[int, float], b: Mapping[int, float], ratio: bool) -> list[float]:
    """Seed by seed over shared seeds: a - b, or log(a / b) for ratios."""
    a, b = finite(a), finite(b)
    shared = [s for s in a if s in b]
    if ratio:
        return [math.log(a[s] / b[s]) for s in shared if a[s] > 0 and b[s] > 0]
    return [a[s] - b[s] for s in shared]


def _exp(x: Interval) -> Interval:
    """An interval of log ratios as ratios (geometric mean and its interval; no std)."""
    return Interval(
        float(np.exp(x.mean)), math.nan, float(np.exp(x.low)), float(np.exp(x.high)), x.n
    )


_SIGMA = re.compile(r"psnr_sigma(\d+)")


def _label(column: str, block: str | None, blocks: Sequence[str | None]) -> str:
    match = _SIGMA.fullmatch(column)
    name = f"σ={match[1]}" if match else column
    return f"{block}, {name}" if len(blocks) > 1 and block else name


def _part(claim: Claim, measured: Measured, block: str | None, column: str, label: str) -> Part:
    def values(variant: str, col: str = column) -> Mapping[int, float]:
        return measured.get((block, variant), {}).get(col, {})

    first = claim.rows[0]
    if claim.kind == "gain":
        diffs = _differences(
            values(first, claim.columns[0]), values(first, claim.columns[1]), False
        )
    elif claim.kind == "best":
        each = [_differences(values(first), values(o), False) for o in claim.rows[1:]]
        others = [interval(d) for d in each]
        closest = min(others, key=lambda x: x.mean)
        verdicts = [_band_verdict(x, 0.0, math.inf) for x in others]
        verdict = (
            CONTRADICTED if CONTRADICTED in verdicts
            else SUPPORTED if all(v == SUPPORTED for v in verdicts) else INCONCLUSIVE
        )  # fmt: skip
        needed = _most([
            _to_decide(d, x, 0.0, math.inf)
            for d, x, v in zip(each, others, verdicts, strict=True) if v == INCONCLUSIVE
        ])  # fmt: skip
        return Part(f"{label}, vs closest", closest, verdict, needed)
    else:
        diffs = _differences(values(first), values(claim.rows[1]), claim.kind == "ratio")
    estimate = interval(diffs)
    if claim.kind != "ratio":
        needed = _to_decide(diffs, estimate, claim.low, claim.high)
        return Part(label, estimate, _band_verdict(estimate, claim.low, claim.high), needed)
    # ratios are decided on the logs of the per-seed ratios, against the logs of the band
    low, high = (math.log(e) if e > 0 else -math.inf for e in (claim.low, claim.high))
    needed = _to_decide(diffs, estimate, low, high)
    estimate = _exp(estimate)
    return Part(label, estimate, _band_verdict(estimate, claim.low, claim.high), needed)


def _caveat(
    claim: Claim, measured: Measured, timing: Timing, block: str | None, column: str
) -> str:
    """Why the rows' times at ``column`` were not taken alike, seed by seed over the seeds
    every row has: a side disturbed or with unrecorded conditions, or the sides timed in
    different settings. Empty for a column without conditions (not a time) or a gain."""
    if claim.kind == "gain":
        return ""
    timed = [timing.get((block, v), {}).get(column) for v in claim.rows]
    if any(t is None for t in timed):
        return ""
    values = [finite(measured.get((block, v), {}).get(column, {})) for v in claim.rows]
    seeds = sorted(set.intersection(*(set(v) for v in values)))
    found: dict[str, list[str]] = {}
    for row, conditions in zip(claim.rows, timed, strict=True):
        for label, said in _CAVEATS.items():
            hit = [s for s in seeds if s in conditions and conditions[s].label == label]
            if hit:
                found.setdefault(said, []).append(f"{row} ({_seeds(hit)})")
    apart = [s for s in seeds if len({t[s].setting for t in timed if s in t}) > 1]
    if apart:
        found["timed on different machines or thread counts"] = [_seeds(apart)]
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in found.items())


_CAVEATS = {DISTURBED: "disturbed", UNKNOWN: "conditions not recorded"}


def _seeds(seeds: Sequence[int]) -> str:
    return f"seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}"


def check(
    claim: Claim, measured: Measured, blocks: Sequence[str | None], profile: str,
    timing: Timing | None = None,
) -> Check:  # fmt: skip
    """The claim's verdict on what a report measured (a profile's records of one table);
    ``timing``: the conditions each row's times were taken under, where known."""
    missing = [
        v for v in claim.rows for b in blocks
        if not any(finite(s) for s in measured.get((b, v), {}).values())
    ]  # fmt: skip
    if missing:
        reason = f"no records for {', '.join(dict.fromkeys(missing))}"
        return Check(claim, NOT_RUN, NOT_RUN, (), reason)
    columns = claim.columns[:1] if claim.kind == "gain" else claim.columns
    parts = tuple(
        replace(_part(claim, measured, b, c, _label(c, b, blocks)),
                caveat=_caveat(claim, measured, timing or {}, b, c))
        for b in blocks for c in columns
    )  # fmt: skip
    verdicts = [p.verdict for p in parts]
    if CONTRADICTED in verdicts:
        verdict = CONTRADICTED
    elif all(v == SUPPORTED for v in verdicts):
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    reason = ""
    if any(p.estimate.n < 2 for p in parts):
        reason = "a verdict needs 2 or more seeds per row"
    elif verdict == INCONCLUSIVE:
        reason = "an interval spans the claim's threshold"
    if profile in NOT_EVIDENCE_PROFILES:
        return Check(claim, NOT_EVIDENCE, verdict, parts, f"profile {profile}")
    return Check(claim, verdict, verdict, parts, reason)


def check_all(
    claims: Sequence[Claim], measured: Measured, blocks: Sequence[str | None], profile: str,
    timing: Timing | None = None,
) -> list[Check]:  # fmt: skip
    return [check(c, measured, blocks, profile, timing) for c in claims]


def seeds_per_row(checks: Sequence[Check]) -> dict[str, int]:
    """For ``plan --seeds-for-claims``: per row, the most seeds any inconclusive claim
    naming it needs (claims whose seeds cannot be named are left out)."""
    rows: dict[str, int] = {}
    for c in checks:
        if (needed := seeds_to_decide(c)) is not None:
            for row in c.claim.rows:
                rows[row] = max(rows.get(row, 0), needed)
    return rows


__all__ = [
    "INCONCLUSIVE", "KINDS", "Check", "Claim", "Part", "Timed", "Timing", "check", "check_all",
    "seeds_per_row", "seeds_to_decide",
]  # fmt: skip
