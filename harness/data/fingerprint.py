"""What a dataset's files were, for a record's provenance (``data_files``).

Three kinds of entry, each saying how it was obtained:

- ``md5, checked by torchvision``: the checksum torchvision compared the file against
  as it opened it (nothing is re-read: the check just passed);
- ``sha256``: a hash of a file's contents (embedded demo data, generated fixtures,
  files torchvision reads unchecked), computed once per file per process;
- ``sha256 of the files' sha256s``: one entry for a folder of test images (hundreds of
  files), each file hashed as above, the hashes taken in order of path;
- ``sha256 of the decoded pixels``: for photographs that come from other packages
  (scikit-image, scikit-learn) rather than from files of ours;
- ``fingerprint``: for image folders too large to hash per run (ImageNet): the number of
  files, their total size and a sha256 of their sorted relative names and sizes; the
  contents are not read, so an edit that keeps a file's size goes unnoticed.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MD5_TORCHVISION = "md5, checked by torchvision"
SHA256 = "sha256"
PIXELS = "sha256 of the decoded pixels"
SET = "sha256 of the files' sha256s, in order of path"
FINGERPRINT = "fingerprint (file count, bytes, sha256 of sorted names and sizes; contents not read)"


def checked_md5s(folder: Path, files: Iterable[tuple[str, str | None]]) -> list[dict[str, Any]]:
    """Entries for files torchvision verified against the md5s it ships (``(name, md5)``)."""
    return [
        {"path": str(Path(folder) / name), "kind": MD5_TORCHVISION, "value": md5}
        for name, md5 in files
        if md5
    ]


def hashed(paths: Iterable[Path | str]) -> list[dict[str, Any]]:
    """sha256 entries for ``paths`` (each file read once per process while unchanged)."""
    out = []
    for path in paths:
        path = Path(path)
        stat = path.stat()
        digest = _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        out.append({"path": str(path), "kind": SHA256, "value": digest, "bytes": stat.st_size})
    return out


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """Keyed on size and mtime too, so a file rewritten in place is hashed anew."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hashed_set(label: str, paths: Iterable[Path | str]) -> dict[str, Any]:
    """One entry for many files: a hash of their hashes (``label`` names the set)."""
    entries = sorted(hashed(paths), key=lambda e: e["path"])
    digest = hashlib.sha256("".join(f"{e['path']}\0{e['value']}\n" for e in entries).encode())
    return {"path": label, "kind": SET, "value": digest.hexdigest(), "files": len(entries),
            "bytes": sum(e["bytes"] for e in entries)}  # fmt: skip


def of_pixels(label: str, pixels: bytes) -> dict[str, Any]:
    """An entry for an image that is not a file of ours (``label`` says what it is)."""
    return {"path": label, "kind": PIXELS, "value": hashlib.sha256(pixels).hexdigest()}


def fingerprint(folder: Path | str) -> dict[str, Any]:
    """A cheap fingerprint of every file under ``folder`` (names and sizes, not contents)."""
    folder = Path(folder)
    return dict(_fingerprint(str(folder.resolve())), path=str(folder))


@functools.lru_cache(maxsize=16)
def _fingerprint(folder: str) -> tuple[tuple[str, Any], ...]:
    listing, total, count = hashlib.sha256(), 0, 0
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            size = os.stat(os.path.join(root, name)).st_size
            rel = os.path.relpath(os.path.join(root, name), folder)
            listing.update(f"{rel}\0{size}\n".encode())
            total, count = total + size, count + 1
    return (("kind", FINGERPRINT), ("value", listing.hexdigest()), ("files", count),
            ("bytes", total))  # fmt: skip
