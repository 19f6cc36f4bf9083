"""Hypothesis strategies for the fuzz tests: damaged copies of valid files, pickles
(minimal, deeply nested, hostile), torch files of wrong dtypes and shapes, JSON values
(non-finite numbers, deep nesting, non-UTF-8 text), and a planted payload whose only
effect is a marker file, so a test can tell whether any reader ran it."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import tempfile
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import torch
from hypothesis import strategies as st

# Created by the planted payload if any reader ever unpickles it with a plain unpickler.
MARKER = Path(tempfile.gettempdir()) / f"harness-fuzz-payload-ran-{os.getpid()}"


class Payload:
    """Unpickling this runs a shell command (what a malicious file would do)."""

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {MARKER}",)


def flip(data: bytes, bits: list[int]) -> bytes:
    out = bytearray(data)
    for bit in bits:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def damaged(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, or ``valid`` cut short, with bits flipped, or with bytes inserted."""
    n = len(valid)
    return st.one_of(
        st.binary(max_size=1024),
        st.integers(0, n - 1).map(lambda k: valid[:k]),
        st.lists(st.integers(0, 8 * n - 1), min_size=1, max_size=16).map(partial(flip, valid)),
        st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=64)).map(
            lambda cut: valid[: cut[0]] + cut[1] + valid[cut[0] :]
        ),
    )


DEPTH = 20_000  # far beyond Python's recursion limit
HOSTILE_PICKLES = (
    b"\x80\x02" + b"]" * DEPTH + b"a" * (DEPTH - 1) + b".",  # lists nested DEPTH deep
    b"\x80\x02" + b"(" * DEPTH + b"t" * DEPTH + b".",  # tuples nested DEPTH deep
    b"\x80\x02X\xff\xff\xff\xff",  # a string that claims 4 GiB
    b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b".",  # bytes that claim 2**62
    b"\x80\x02\x8b\xff\xff\xff\x7f",  # an integer of 2 GiB of digits
    b".",  # STOP on an empty stack
    b"",
    pickle.dumps(Payload(), protocol=2),
    pickle.dumps({"data": Payload(), "labels": [], "w": torch.zeros(1)}, protocol=2),
)

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
    st.binary(max_size=8),
)  # fmt: skip
PICKLES = st.one_of(
    st.tuples(
        st.recursive(
            _SCALARS,
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=4), inner, max_size=4)
                | st.lists(inner, max_size=3).map(tuple)
            ),
            max_leaves=12,
        ),
        st.integers(0, pickle.HIGHEST_PROTOCOL),
    ).map(lambda value: pickle.dumps(*value)),
    st.sampled_from(HOSTILE_PICKLES),
)

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.int8, torch.int64, torch.bool,
           torch.complex64, torch.uint8)  # fmt: skip


def _tensor(dtype: torch.dtype, shape: list[int], huge: bool) -> torch.Tensor:
    if huge:  # 2**40 elements that share one stored number: loading it allocates nothing
        return torch.zeros(1, dtype=dtype).expand(2**40)
    return torch.zeros(shape, dtype=dtype)


TENSORS = st.builds(
    _tensor, st.sampled_from(_DTYPES), st.lists(st.integers(0, 4), max_size=4), st.booleans()
)


def saved(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


# torch files of the right kind holding the wrong things: tensors of any dtype and shape
# under any name, nested dicts, lists, non-tensor values
STATE_DICTS = st.recursive(
    st.dictionaries(st.text(max_size=12), TENSORS, max_size=4),
    lambda inner: (
        st.dictionaries(st.text(max_size=6), inner | TENSORS | _SCALARS, max_size=3)
        | st.lists(inner, max_size=2)
    ),
    max_leaves=6,
).map(saved)


def in_zip(template: bytes, pickled: bytes) -> bytes:
    """A torch zip file (``template``'s) whose ``data.pkl`` is ``pickled``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(template)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, pickled if info.filename.endswith("data.pkl") else src.read(info))
    return out.getvalue()


def torch_files(valid: bytes) -> st.SearchStrategy[bytes]:
    """What a reader of ``.pt``-like files may meet, ``valid`` the file it expects."""
    return st.one_of(damaged(valid), PICKLES, PICKLES.map(partial(in_zip, valid)), STATE_DICTS)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip
HOSTILE_JSON = (
    b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than any reader recurses
    b'{"a": ' + b"1" * 5000 + b"}",  # a number of more digits than int() accepts
    b'{"a": NaN, "b": Infinity, "c": -Infinity}',
    b"\xff\xfe\x00{}",  # not UTF-8
    b"\x00" * 64,
    b"",
)


@contextlib.contextmanager
def folder() -> Iterator[Path]:
    """A fresh folder for one example (Hypothesis runs many per test function)."""
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@contextlib.contextmanager
def stderr_lines() -> Iterator[list[str]]:
    """The non-empty lines written to stderr inside the block."""
    lines: list[str] = []
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        yield lines
    lines += [line for line in buffer.getvalue().splitlines() if line.strip()]


def assert_one_line(message: str, *names: object) -> None:
    """A refusal: one line that names the file (any of ``names``)."""
    assert "\n" not in message.strip(), message
    assert any(str(n) in message for n in names), message
