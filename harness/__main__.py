from harness.core import lifeline

lifeline.guard_rank()  # before the CLI's imports: a rank dies with its agent

from harness.cli import main  # noqa: E402

raise SystemExit(main())
