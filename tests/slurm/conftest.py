"""A real one-node SLURM cluster for the tests (tests/slurm/cluster.sh): started once
per session if it is not already running, and stopped at the end if this session
started it. Where it cannot run (not root, no slurm-wlm or munge), the tests skip with
one line saying why."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CLUSTER = Path(__file__).resolve().parent / "cluster.sh"
DIR = Path(os.environ.get("HARNESS_SLURM_DIR", "/tmp/harness-slurm"))


def _why_not() -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return "SLURM tests need root (munged and slurmd run as root)"
    missing = [t for t in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue")
               if shutil.which(t) is None]  # fmt: skip
    if missing:
        return f"SLURM tests need Debian's slurm-wlm and munge ({', '.join(missing)} not found)"
    return None


def _cluster(command: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLUSTER), command], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="session")
def slurm_cluster():
    """SLURM_CONF for the one-node cluster (set in os.environ while the tests run)."""
    why = _why_not()
    if why:
        pytest.skip(why)
    ours = "stopped" in _cluster("status").stdout  # else started by hand: left running
    started = _cluster("start") if ours else None
    if started is not None and started.returncode != 0:
        _cluster("stop")
        pytest.fail(f"the SLURM cluster did not start: {started.stderr.strip()}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(DIR / "slurm.conf")
    try:
        yield os.environ["SLURM_CONF"]
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF")
        else:
            os.environ["SLURM_CONF"] = previous
        if ours:
            _cluster("stop")
