"""Tools beside the tables: the op benchmark and the device self-check."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.store.records import atomic_write_text


def save_result(result: dict[str, Any], out_dir: Path, name: str, markdown: str) -> list[Path]:
    """A tool's result as ``<name>-<UTC time>.json`` and ``.md`` under ``out_dir``: a
    rerun adds files beside the earlier ones, so figures can be compared over time."""
    stem = out_dir / f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    atomic_write_text(paths[0], json.dumps(result, indent=1) + "\n")
    atomic_write_text(paths[1], markdown)
    return paths
