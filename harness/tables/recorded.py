"""The studies a runs folder holds records of, and the files they were run from.

A study is read only when its file is named, since reading it may import its plugins
(code). So a command given a study's bare name, or no name at all, points to the file
instead of skipping the study in silence.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from harness.core.errors import UserError
from harness.store.records import RunStore, read_json
from harness.tables.paper import TABLES

REPORTS = Path("reports")  # where reports (and ablate's study files) go unless --out says
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a study's name, and its records' folder


def _record_files(store: RunStore, name: str) -> list[Path]:
    """The record files under the folder of study ``name``, as ``RunStore.records`` counts
    them (not a cell's ``.train.json``), unread; none for a name no study can have, so an
    argument never sends the lookup outside the runs folder."""
    if not STUDY_NAME.fullmatch(name):
        return []
    return [p for p in (store.root / name).glob("*/*.json") if _is_record(p)]


def _is_record(path: Path) -> bool:
    return not path.name.endswith(".train.json")  # a denoising cell's training history


def has_records(store: RunStore, name: str) -> bool:
    """Whether ``store`` holds records of the study ``name``."""
    return bool(_record_files(store, name))


def recorded_studies(store: RunStore) -> list[str]:
    """The names of the studies with records under ``store``: folders no paper table owns
    named as a study can be (not a tracker's ``_tensorboard``, nor a name made to garble
    the terminal it is printed on)."""
    records = filter(_is_record, store.root.glob("*/*/*.json"))
    names = {p.parent.parent.name for p in records} - set(TABLES)
    return sorted(n for n in names if STUDY_NAME.fullmatch(n))


def study_file(store: RunStore, name: str) -> str | None:
    """The file the newest run of study ``name`` was started from, if it still exists,
    else the one ``ablate`` wrote beside its report in the default reports folder; quoted
    for a shell."""
    try:
        newest = max(_record_files(store, name), key=lambda p: p.stat().st_mtime)
        command = shlex.split(str(read_json(newest).get("command", "")))
    except (OSError, ValueError, AttributeError):  # a record being replaced, or none
        return None
    found = [t for t in command if t.endswith(".toml") and t.isprintable() and Path(t).is_file()]
    found += [str(p) for p in sorted(REPORTS.glob(f"*/{name}.toml"))]
    return shlex.quote(found[0]) if found else None


def refuse_bare_study_name(store: RunStore, name: str) -> None:
    """Answer a study asked for by its name, whose records ``store`` holds, with where
    its file is (the name alone cannot be read: only its file says what it is)."""
    if name in TABLES or not has_records(store, name):
        return
    file = study_file(store, name)
    where = f"its file, {file}" if file else "its .toml file"
    raise UserError(
        f"{name} is a study, not a paper table ({store.root} holds its records): name {where}"
    )
