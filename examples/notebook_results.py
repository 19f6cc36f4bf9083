"""Results in a notebook: the records of a table as pandas frames.

Run it as a script (``python examples/notebook_results.py --runs-dir runs table2``) or
paste the cells (``# %%``) into Jupyter. It trains nothing: it reads the records a
``python -m harness run`` left under the runs folder.
"""

# %%
import argparse

import harness

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("table", nargs="?", default="table2")
parser.add_argument("--runs-dir", default="runs")
parser.add_argument("--profile", help="default: the profile of the table's newest record")
args = parser.parse_args()

# %% One row per cell: variant, seed, every metric and cost, timings, device, hashes
cells = harness.results(args.table, runs_dir=args.runs_dir, profile=args.profile)
print(f"{len(cells)} cells of {args.table} [{cells['profile'].iloc[0]}]")
print(cells[["variant", "seed", "wall_s", "device_name", "protocol_hash"]].to_string(index=False))

# %% Your own aggregate: the slowest variants by total wall time
by_variant = cells.groupby("variant")["wall_s"].agg(["count", "sum"])
print(by_variant.sort_values("sum", ascending=False).head(3).to_string())

# %% The table as reported: means, 95% intervals, tests against the baseline, n
table = harness.summary(args.table, runs_dir=args.runs_dir, profile=args.profile)
shown = [c for c in table.columns if c in ("row", "n_seeds") or c in cells.columns]
print(table[shown].to_string(index=False))
