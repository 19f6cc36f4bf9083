"""Per-image results of a long evaluation, appended as they finish, so a killed
evaluation resumes where it stopped and no image is evaluated twice.

One strict-JSON object per line (a non-finite number is written as null and read back
as NaN); each line is flushed and fsynced before the next image starts. A line cut
short by a kill is dropped when the file is read back. Any other line that is not an
image's result is damage: the file is quarantined, with a warning, and the good lines
are kept, so only the damaged images are evaluated again.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from harness.store.records import (
    atomic_write_text,
    dumps_strict,
    loads_strict,
    quarantine,
    writing,
)

_METRICS = ("psnr", "ssim", "noisy_psnr")


def _entry(line: str) -> dict[str, Any] | None:
    """The result on ``line``, or None when it is not one."""
    try:
        entry = loads_strict(line)
    except ValueError:  # not JSON, NaN tokens, a number too long, nesting too deep
        return None
    if not (isinstance(entry, dict) and isinstance(entry.get("image"), str)):
        return None
    for key in (*_METRICS, "time_s"):
        value = entry.get(key, math.nan if key == "time_s" else "missing")
        if value is None:
            entry[key] = math.nan
        elif not isinstance(value, int | float) or isinstance(value, bool):
            return None
    return entry


class ImageResultCache:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._results: dict[str, dict[str, Any]] = {}
        text = self.path.read_text(errors="replace") if self.path.is_file() else ""
        lines = text.splitlines()
        cut_short = bool(text) and not text.endswith("\n")
        bad = []
        for number, line in enumerate(lines, 1):
            entry = _entry(line)
            if entry is not None:
                self._results[entry["image"]] = entry
            elif not (cut_short and number == len(lines)):
                bad.append(number)
        if bad:
            shown = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
            quarantine(self.path, f"line {shown} is not an image's result")
        if bad or cut_short:  # keep the good lines, in a file that ends cleanly
            with writing(f"the image results {self.path}"):
                atomic_write_text(self.path, "".join(self._line(e) for e in self._results.values()))

    @staticmethod
    def _line(entry: dict[str, Any]) -> str:
        return dumps_strict(entry, sort_keys=True) + "\n"

    def get(self, image_id: str) -> dict[str, Any] | None:
        return self._results.get(image_id)

    def __len__(self) -> int:
        return len(self._results)

    def add(self, entry: dict[str, Any]) -> None:
        with writing(f"the result of image {entry['image']} to {self.path}"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.write(self._line(entry))
                handle.flush()
                os.fsync(handle.fileno())
        self._results[entry["image"]] = entry
