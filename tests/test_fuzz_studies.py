"""Study files (``run STUDY.toml``), fuzzed: damaged copies of the examples, and the
examples with a key set to a value of another type, shape or size, or an unknown key
added. Each compiles or is refused in one line naming the file; a grid over
``MAX_CELLS`` rows is refused with its size unless ``--yes``.

``examples/studies/custom_reduction.toml`` is left out: its ``plugins`` import code by
design, and a fuzzed module name could import any module."""

from __future__ import annotations

import copy
import time
import tomllib
from pathlib import Path

from hypothesis import assume, given
from hypothesis import strategies as st

from harness.core.errors import UserError
from harness.tables.study import MAX_CELLS, load_study, study_text
from tests.fuzz_inputs import assert_one_line, damaged, folder

EXAMPLES = Path(__file__).parents[1] / "examples" / "studies"
STUDIES = {
    p.name: p.read_bytes()
    for p in sorted(EXAMPLES.glob("*.toml"))
    if "plugins" not in p.read_text()
}
_VALUES = st.recursive(
    st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text("abcxyz_", min_size=1, max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


def _keys(study: dict) -> list[tuple[str, ...]]:
    """Every key of a study (and of its tables), and an unknown one beside them."""
    found = [(k,) for k in study] + [("colour",)]
    for key, value in study.items():
        if isinstance(value, dict):
            found += [(key, k) for k in value] + [(key, "colour")]
    return found


def _set(study: dict, where: tuple[str, ...], value: object) -> bytes:
    changed = copy.deepcopy(study)
    target = changed
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    try:
        return study_text(changed).encode()
    except TypeError:  # a value TOML cannot hold
        assume(False)
        raise


@given(st.sampled_from(sorted(STUDIES)), st.data())
def test_study_file(name, data):
    study = tomllib.loads(STUDIES[name].decode())
    mutated = st.builds(_set, st.just(study), st.sampled_from(_keys(study)), _VALUES)
    blob = data.draw(st.one_of(damaged(STUDIES[name]), mutated))
    with folder() as root:
        path = root / name
        path.write_bytes(blob)
        try:
            spec = load_study(path)
        except UserError as exc:
            assert_one_line(str(exc), path)
            return
        assert spec.rows


def test_a_huge_grid_is_refused_with_its_size_quickly():
    study = tomllib.loads(STUDIES["mnist_stride_sweep.toml"].decode())
    study["grid"]["stride"] = list(range(2, MAX_CELLS))  # 3 methods: about 300,000 rows
    with folder() as root:
        path = root / "huge.toml"
        path.write_text(study_text(study))
        started = time.perf_counter()
        try:
            load_study(path)
        except UserError as exc:
            assert_one_line(str(exc), path)
            assert "--yes" in str(exc) and "299,994" in str(exc), exc
        else:
            raise AssertionError("a grid over MAX_CELLS rows was accepted without --yes")
        assert time.perf_counter() - started < 10
