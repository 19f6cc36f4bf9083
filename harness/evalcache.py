"""Per-image results of a long evaluation, appended as they finish, so a killed
evaluation resumes where it stopped and no image is evaluated twice.

One JSON object per line; each line is flushed and fsynced before the next image
starts. A line cut short by a kill is ignored when the file is read back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class ImageResultCache:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._results: dict[str, dict[str, Any]] = {}
        text = self.path.read_text() if self.path.is_file() else ""
        self._cut_short = bool(text) and not text.endswith("\n")
        if text:
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line interrupted mid-write
                self._results[entry["image"]] = entry

    def get(self, image_id: str) -> dict[str, Any] | None:
        return self._results.get(image_id)

    def __len__(self) -> int:
        return len(self._results)

    def add(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            # after a line cut short by a kill, start a fresh line
            handle.write("\n" * self._cut_short + json.dumps(entry, sort_keys=True) + "\n")
            self._cut_short = False
            handle.flush()
            os.fsync(handle.fileno())
        self._results[entry["image"]] = entry
