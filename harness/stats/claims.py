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
numbers are shown all the same.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.stats.intervals import LEVEL, Interval, finite, interval

KINDS = ("greater", "ratio", "gain", "best")
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
NOT_RUN, NOT_EVIDENCE = "not run", "not evidence (demo/smoke)"
NOT_EVIDENCE_PROFILES = ("demo", "smoke")

# (test set or None, variant) -> column -> seed -> value: what a report measured
Measured = Mapping[tuple[str | None, str], Mapping[str, Mapping[int, float]]]


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

    def verdict_text(self) -> str:
        """The verdict with its reason, or for demo and smoke what the numbers alone say."""
        if self.verdict == NOT_EVIDENCE:
            return f"{self.verdict}; on these numbers: {self.on_the_numbers}"
        return self.verdict + (f" ({self.reason})" if self.reason else "")

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
            "parts": [
                {"label": p.label, "estimate": p.estimate.mean, "ci95_low": p.estimate.low,
                 "ci95_high": p.estimate.high, "n": p.estimate.n, "verdict": p.verdict}
                for p in self.parts
            ],
            "measurement": self.measurement(),
        }  # fmt: skip


MAX_SEEDS = 50  # beyond this, "more seeds" is no advice
_QUANTILE = (1 + LEVEL) / 2  # of Student t, for an interval's half-width


def seeds_to_decide(check: Check) -> int | None:
    """The fewest seeds per row at which every undecided part's 95% interval would clear
    the claim's threshold, if the mean and spread stayed as measured (None: more than
    MAX_SEEDS, or fewer than 2 seeds to measure a spread from)."""
    claim, needed = check.claim, 2
    ratio = claim.kind == "ratio"
    edges = [e for e in (claim.low, claim.high) if math.isfinite(e) and (e > 0 or not ratio)]
    for part in (p for p in check.parts if p.verdict == INCONCLUSIVE):
        x = part.estimate
        if x.n < 2 or not edges:
            return None
        scale = math.log if ratio else float
        centre = (scale(x.low) + scale(x.high)) / 2
        half = (scale(x.high) - scale(x.low)) / 2
        from scipy import stats  # seconds to import: not at the CLI's start

        distance = min(abs(centre - scale(e)) for e in edges)
        spread = half * math.sqrt(x.n) / stats.t.ppf(_QUANTILE, x.n - 1)
        n = next(
            (m for m in range(x.n, MAX_SEEDS + 1)
             if stats.t.ppf(_QUANTILE, m - 1) * spread / math.sqrt(m) < distance),
            None,
        )  # fmt: skip
        if n is None:
            return None
        needed = max(needed, n)
    return needed


def _number(x: Interval, ratio: bool) -> str:
    fmt = "{:.3g}x" if ratio else "{:+.4g}"
    text = fmt.format(x.mean)
    return text if x.n < 2 else f"{text} [{fmt.format(x.low)}, {fmt.format(x.high)}]"


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
        others = [interval(_differences(values(first), values(o), False)) for o in claim.rows[1:]]
        closest = min(others, key=lambda x: x.mean)
        verdicts = [_band_verdict(x, 0.0, math.inf) for x in others]
        verdict = (
            CONTRADICTED if CONTRADICTED in verdicts
            else SUPPORTED if all(v == SUPPORTED for v in verdicts) else INCONCLUSIVE
        )  # fmt: skip
        return Part(f"{label}, vs closest", closest, verdict)
    else:
        diffs = _differences(values(first), values(claim.rows[1]), claim.kind == "ratio")
    estimate = interval(diffs)
    if claim.kind == "ratio":
        estimate = _exp(estimate)
    return Part(label, estimate, _band_verdict(estimate, claim.low, claim.high))


def check(claim: Claim, measured: Measured, blocks: Sequence[str | None], profile: str) -> Check:
    """The claim's verdict on what a report measured (a profile's records of one table)."""
    missing = [
        v for v in claim.rows for b in blocks
        if not any(finite(s) for s in measured.get((b, v), {}).values())
    ]  # fmt: skip
    if missing:
        reason = f"no records for {', '.join(dict.fromkeys(missing))}"
        return Check(claim, NOT_RUN, NOT_RUN, (), reason)
    columns = claim.columns[:1] if claim.kind == "gain" else claim.columns
    parts = tuple(
        _part(claim, measured, b, c, _label(c, b, blocks)) for b in blocks for c in columns
    )
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
    claims: Sequence[Claim], measured: Measured, blocks: Sequence[str | None], profile: str
) -> list[Check]:
    return [check(c, measured, blocks, profile) for c in claims]


__all__ = ["KINDS", "Check", "Claim", "Part", "check", "check_all"]
