"""Every file the tool reads, fuzzed (see tests/fuzz_inputs.py for the inputs).

Whatever the bytes, a reader returns what a valid file holds or says in one line, naming
the file, what is wrong: a ``UserError`` (exit 2) for files the user gave (weights,
data, test images), a quarantine with one warning for files the tool wrote (records,
``_trained`` entries, caches, checkpoints), whose cell is then redone. No exception of
another kind escapes (it would be a traceback), and no planted pickle ever runs.
The example set is Hypothesis's "ci" profile (tests/conftest.py): fixed, and small.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from harness.core.errors import UserError
from harness.data.cifar import load_fixture
from harness.data.classification import load_classification
from harness.data.images import check_images, read_rgb
from harness.run.planning import plan_cells
from harness.store.evalcache import ImageResultCache
from harness.store.records import RunStore, file_digest, load_tensors
from harness.tables.paper import get_table
from harness.tasks.adversarial.engine import build_denoiser
from harness.train.checkpoint import load_checkpoint, restore_rng, rng_states, save_checkpoint
from tests.fixtures import write_cifar10_fixture, write_mnist_raw
from tests.fuzz_inputs import (
    HOSTILE_JSON,
    HOSTILE_PICKLES,
    JSON,
    MARKER,
    PICKLES,
    assert_one_line,
    damaged,
    folder,
    in_zip,
    saved,
    stderr_lines,
    torch_files,
)

GOLDEN = Path(__file__).parent / "golden" / "runs"
RECORD = (GOLDEN / "table1" / "smoke" / "mnist.baseline-seed0-8392408e21c9.json").read_bytes()
CONFIG = json.loads(RECORD)["config"]
CACHE = GOLDEN / "table4" / "smoke" / "denoiser.baseline-seed0-3859c4117ad9.images.jsonl"
WEIGHTS = saved({"conv.weight": torch.randn(4, 3, 3, 3), "conv.bias": torch.zeros(4)})


@pytest.fixture(autouse=True)
def _no_payload_ran():
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "a planted pickle ran"


def _warned(lines: list[str], path: Path) -> None:
    assert len(lines) == 1 and lines[0].startswith("warning: "), lines
    assert str(path) in lines[0], lines


# --- records ---------------------------------------------------------------------------


def _record_with(field: str, value: object) -> bytes:
    record = json.loads(RECORD)
    record[field] = value
    return json.dumps(record).encode()  # NaN and Infinity tokens included


_FIELDS = ("schema", "status", "config", "metrics", "wall_s", "env", "data", "history",
           "started_at", "notes", "diverged", "weights", "files", "nonfinite")  # fmt: skip
_NAMES = st.sampled_from(("../x.pt", "/etc/passwd", "a/b.pt", "", ".", "..", "x\x00.pt", "w.pt"))
_FILES = st.dictionaries(
    _NAMES, st.fixed_dictionaries({"size": st.integers(), "sha256": st.text()})
)
RECORDS = st.one_of(
    damaged(RECORD),
    st.builds(_record_with, st.sampled_from(_FIELDS), JSON | _FILES),
    st.sampled_from(HOSTILE_JSON),
)


@given(RECORDS)
def test_record(data):
    with folder() as root:
        store = RunStore(root, verify=True)
        path = store.path(CONFIG)
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        record, problem = store.inspect(CONFIG)
        assert (record is None) != (problem is None)
        assert plan_cells([CONFIG], store).cells[0].label == ("done" if record else "stale")
        with stderr_lines() as lines:
            loaded = store.load(CONFIG)
            listed = list(store.records(CONFIG["table"]))
        if problem is None:
            assert loaded is not None and len(listed) == 1 and not lines
        else:  # moved aside with one warning; the cell is redone
            assert loaded is None and not listed and not path.exists()
            _warned(lines, path)


# --- weights (--denoiser-weights, and the .pt beside a record) ------------------------


@given(torch_files(WEIGHTS))
def test_weights(data):
    protocol = get_table("adversarial").protocol("smoke")
    with folder() as root:
        path = root / "w.pt"
        path.write_bytes(data)
        try:
            state = load_tensors(path)
        except UserError as exc:
            assert_one_line(str(exc), path)
            return
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        try:  # a state dict: it fits the denoiser or is refused in one line
            build_denoiser(protocol, state)
        except UserError as exc:
            assert_one_line(str(exc), "--denoiser-weights")


@given(torch_files(WEIGHTS))
def test_cell_weights(data):
    with folder() as root:
        store = RunStore(root)
        path = store.path(CONFIG).with_suffix(".pt")
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        with stderr_lines() as lines:
            state = store.cell_weights(CONFIG)
        if state is None:
            _warned(lines, path)
            assert not path.exists()
        else:
            assert not lines and all(isinstance(v, torch.Tensor) for v in state.values())


# --- checkpoints ----------------------------------------------------------------------


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc(x))


def _checkpoint() -> bytes:
    model = _Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    with folder() as root:
        save_checkpoint(root / "c.ckpt", epoch=1, model=model, optimizer=optimizer,
                        history=[{"loss": 1.0}], epoch_times_s=[0.5])  # fmt: skip
        return (root / "c.ckpt").read_bytes()


@given(torch_files(_checkpoint()))
def test_checkpoint(data):
    model = _Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = rng_states()
    with folder() as root:
        path = root / "runs" / "t" / "p" / "cell.ckpt"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        with stderr_lines() as lines:
            state = load_checkpoint(path, model, optimizer)
        if state is None:
            _warned(lines, path)
            return
        try:  # what the training loop does with a checkpoint it was given
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            restore_rng(state["rng"])
        finally:
            restore_rng(rng)
        assert not lines


# --- the shared-training index ----------------------------------------------------------


def _entry(weights: object = "t/p/a.pt", history: object = "t/p/a.train.json",
           files: object = None) -> bytes:  # fmt: skip
    entry = {"weights": weights, "history": history}
    if files is not None:
        entry["files"] = files
    return json.dumps(entry).encode()


_PATHS = st.sampled_from(("t/p/a.pt", "t/p/a.train.json", "../outside.pt", "t/p/../../../x",
                          "/etc/hostname", "t/p/link.pt", "", "t/p", "t/p/a.pt\x00"))  # fmt: skip
ENTRIES = st.one_of(
    damaged(_entry()),
    st.builds(_entry, _PATHS | JSON, _PATHS | JSON, st.none() | JSON | _FILES),
    st.sampled_from(HOSTILE_JSON),
)


@given(ENTRIES)
def test_training_index(data):
    with folder() as base:
        root = base / "runs"
        (root / "t" / "p").mkdir(parents=True)
        (root / "t" / "p" / "a.pt").write_bytes(WEIGHTS)
        (root / "t" / "p" / "a.train.json").write_text('{"history": []}')
        (base / "outside.pt").write_bytes(WEIGHTS)
        (root / "t" / "p" / "link.pt").symlink_to(base / "outside.pt")
        index = root / "_trained" / "k.json"
        index.parent.mkdir()
        index.write_bytes(data)
        with stderr_lines() as lines:
            found = RunStore(root).shared_training("k")
        if found is not None:  # two files, both inside the runs folder
            assert not lines
            for path in found:
                assert path.is_file() and path.resolve().is_relative_to(root.resolve())
        elif lines:
            _warned(lines, index)
            assert not index.exists()


def test_training_index_of_intact_files_is_used():
    """The control for the test above: a sound entry, with and without digests."""
    with folder() as root:
        (root / "t" / "p").mkdir(parents=True)
        weights, history = root / "t" / "p" / "a.pt", root / "t" / "p" / "a.train.json"
        weights.write_bytes(WEIGHTS)
        history.write_text("{}")
        (root / "_trained").mkdir()
        for files in (None, {"weights": file_digest(weights), "history": file_digest(history)}):
            (root / "_trained" / "k.json").write_bytes(_entry(files=files))
            assert RunStore(root).shared_training("k") == (weights, history)


# --- image-result caches --------------------------------------------------------------


def _lines(values: list) -> bytes:
    return "".join(json.dumps(v) + "\n" for v in values).encode()


CACHES = st.one_of(
    damaged(CACHE.read_bytes()),
    st.lists(JSON, max_size=4).map(_lines),
    st.lists(st.sampled_from(HOSTILE_JSON), max_size=3).map(b"\n".join),
)


@given(CACHES)
def test_image_cache(data):
    with folder() as root:
        path = root / "t" / "p" / "cell.images.jsonl"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        with stderr_lines() as lines:
            cache = ImageResultCache(path)
        if lines:
            _warned(lines, path)
        for image, entry in cache._results.items():
            assert isinstance(image, str)
            assert all(isinstance(entry[k], int | float) for k in ("psnr", "ssim", "noisy_psnr"))
        assert len(ImageResultCache(path)) == len(cache)  # what was kept reads back, quietly


# --- data files the user gives --------------------------------------------------------


def _cifar_files(root: Path) -> dict[str, bytes]:
    write_cifar10_fixture(root, n_train=10, n_test=5)
    folder_ = root / "cifar10-fixture" / "cifar-10-batches-py"
    return {p.name: p.read_bytes() for p in sorted(folder_.iterdir())}


with folder() as _root:
    CIFAR = _cifar_files(_root)
    MNIST = {k: (_root / "MNIST" / "raw" / k) for k in write_mnist_raw(_root, 6, 4)}
    MNIST = {k: p.read_bytes() for k, p in MNIST.items()}


@given(st.sampled_from(sorted(CIFAR)), st.data())
def test_cifar_batch(name, data):
    blob = data.draw(st.one_of(damaged(CIFAR[name]), PICKLES))
    with folder() as root:
        batches = root / "cifar10-fixture" / "cifar-10-batches-py"
        batches.mkdir(parents=True)
        for other, content in CIFAR.items():
            (batches / other).write_bytes(blob if other == name else content)
        try:
            arrays, _ = load_fixture(root, 10, 5)
        except UserError as exc:
            assert_one_line(str(exc), batches / name)
            return
        assert arrays[0].shape[1:] == (3, 32, 32) and arrays[0].dtype == torch.uint8


@given(st.sampled_from(sorted(MNIST)), st.data())
def test_idx_file(name, data):
    blob = data.draw(damaged(MNIST[name]))
    with folder() as root:
        raw = root / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for other, content in MNIST.items():
            (raw / other).write_bytes(blob if other == name else content)
        try:
            loaded = load_classification("mnist", root, download=False)
        except UserError as exc:
            assert_one_line(str(exc), raw / name, raw)
            return
        assert int(loaded.train_y.max()) < 10 and loaded.train_x.shape[1:] == (1, 28, 28)


def _image(suffix: str) -> bytes:
    with folder() as root:
        path = root / f"i{suffix}"
        pixels = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(path)
        return path.read_bytes()


IMAGES = {suffix: _image(suffix) for suffix in (".png", ".jpg", ".bmp", ".tif")}


@given(st.sampled_from(sorted(IMAGES)), st.data())
def test_test_image(suffix, data):
    blob = data.draw(damaged(IMAGES[suffix]))
    with folder() as root:
        path = root / f"img{suffix}"
        path.write_bytes(blob)
        try:
            check_images([(path, "img")], 7)
            image = read_rgb(path)
        except UserError as exc:
            assert_one_line(str(exc), path)
            return
        assert image.pixels.dtype == torch.uint8 and image.pixels.shape[0] == 3


def test_planted_pickle_in_a_torch_zip_never_runs():
    """The payload inside a real torch zip, given as weights and as a checkpoint."""
    planted = in_zip(WEIGHTS, HOSTILE_PICKLES[-1])
    with folder() as root:
        path = root / "runs" / "t" / "p" / "w.pt"
        path.parent.mkdir(parents=True)
        path.write_bytes(planted)
        with pytest.raises(UserError, match="refusing to load"):
            load_tensors(path)
        with stderr_lines():
            assert load_checkpoint(path) is None
