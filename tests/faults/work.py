"""Work for the orphan tests' worker processes (light to import: no torch)."""

import time
from pathlib import Path


def busy(marker: str) -> None:
    """Say that work has started (a file), then keep working for longer than any test."""
    Path(marker).touch()
    time.sleep(300)
