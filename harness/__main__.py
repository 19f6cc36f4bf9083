import gc

from harness.core import lifeline

lifeline.guard_rank()  # before the CLI's imports: a rank dies with its agent

from harness.cli import main  # noqa: E402

try:
    code = main()
finally:
    # The interpreter's last collections walk every object torch, pandas and matplotlib
    # made (about 1 s after a run on a 2-core machine, 0.3 s after a report); nothing
    # the tool still needs is freed by them (its files are written and closed, Ray's and
    # the lifeline's exit hooks run before), so they are moved out of the collector's way.
    gc.freeze()
raise SystemExit(code)
