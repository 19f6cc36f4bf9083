"""Every bad input is one line on stderr, exit 2, before anything is trained or written,
and no empty folder is left behind."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from tests.faults.helpers import assert_refused

SMOKE = ("--profile", "smoke")


def _png_header_only(path, width, height):
    """A PNG that claims ``width`` x ``height`` (a decompression bomb's header)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def _folder(tmp_path, *images):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, side in images:
        Image.fromarray(np.full((side, side, 3), 100, np.uint8)).save(folder / name)
    return folder


def _run(tmp_path, *args):
    return ("run", *args, *SMOKE, "--data-root", tmp_path / "data", "--runs-dir",
            tmp_path / "runs", "--out", tmp_path / "reports")  # fmt: skip


@pytest.mark.parametrize(("width", "height"), [(14000, 14000), (9000, 9000)])
def test_huge_image_is_refused_by_a_stated_limit(tmp_path, capsys, width, height):
    folder = _folder(tmp_path, ("ok.png", 40))
    _png_header_only(folder / "huge.png", width, height)
    line = assert_refused(capsys, *_run(tmp_path, "table4", "--test-dir", folder),
                          says="larger than the limit of 64,000,000 pixels", nothing_under=tmp_path)  # fmt: skip
    assert "huge.png" in line


def test_image_smaller_than_the_protocol_needs_is_named(tmp_path, capsys):
    folder = _folder(tmp_path, ("ok.png", 40), ("tiny.png", 4))
    line = assert_refused(capsys, *_run(tmp_path, "table5", "--test-dir", folder),
                          says="is 4x4; this table needs at least", nothing_under=tmp_path)  # fmt: skip
    assert "tiny.png" in line


def test_undecodable_image_is_refused_before_training(tmp_path, capsys):
    folder = _folder(tmp_path, ("ok.png", 40))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert_refused(capsys, *_run(tmp_path, "table4", "--test-dir", folder),
                   says="cannot read image", nothing_under=tmp_path)  # fmt: skip


@pytest.mark.parametrize("kind", ["directory", "garbage", "missing"])
def test_bad_denoiser_weights(tmp_path, capsys, kind):
    weights = tmp_path / "w.pt"
    if kind == "directory":
        weights.mkdir()
    elif kind == "garbage":
        weights.write_bytes(b"\x00\x01")
    says = {"directory": "is a directory", "garbage": "refusing to load", "missing": "is missing"}
    assert_refused(capsys, *_run(tmp_path, "adversarial", "--denoiser-weights", weights),
                   says=says[kind], nothing_under=tmp_path)  # fmt: skip


def test_weights_that_hold_code_are_refused(tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(1), "x": object()}, weights)
    assert_refused(capsys, *_run(tmp_path, "adversarial", "--denoiser-weights", weights),
                   says="refusing to load", nothing_under=tmp_path)  # fmt: skip


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [("--seeds", "100000000", "--seeds must be 1 to 1000"), ("--seeds", "0", "--seeds must be"),
     ("--workers", "0", "--workers must be 1 to 256"), ("--workers", "100000", "--workers must")],
)  # fmt: skip
def test_bounds(tmp_path, capsys, option, value, says):
    assert_refused(capsys, *_run(tmp_path, "table4", option, value), says=says,
                   nothing_under=tmp_path)  # fmt: skip


def test_plan_bounds_seeds(tmp_path, capsys):
    assert_refused(capsys, "plan", "table1", "--seeds", "100000000", "--runs-dir", tmp_path,
                   says="--seeds must be 1 to 1000", nothing_under=tmp_path)  # fmt: skip


@pytest.mark.parametrize("option", ["--out", "--runs-dir"])
def test_unusable_output_folder_is_found_first_and_nothing_created(tmp_path, capsys, option):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = {"--out": tmp_path / "reports", "--runs-dir": tmp_path / "runs"}
    args[option] = blocker / "sub"
    assert_refused(
        capsys, "run", "table1", *SMOKE, "--data-root", tmp_path / "data",
        "--runs-dir", args["--runs-dir"], "--out", args["--out"],
        says="is not a directory", nothing_under=tmp_path,
    )  # fmt: skip


def test_report_refuses_a_file_as_runs_dir(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.write_text("x")
    assert_refused(capsys, "report", "table1", "--runs-dir", runs, "--out", tmp_path / "o",
                   says="is not a directory", nothing_under=tmp_path)  # fmt: skip


def test_report_refuses_a_missing_test_dir(tmp_path, capsys):
    assert_refused(capsys, "report", "table4", "--runs-dir", tmp_path / "runs", "--test-dir",
                   tmp_path / "nowhere", "--out", tmp_path / "o", says="--test-dir",
                   nothing_under=tmp_path)  # fmt: skip


def _folder_args(tmp_path, command):
    """A command's folder options, each pointing at a fresh place under ``tmp_path``."""
    args = {"plan": ("plan", "table1", *SMOKE), "report": ("report", "table1", *SMOKE),
            "claims": ("claims", "table1"), "figures": ("figures", "fig5"),
            "run": ("run", "table1", *SMOKE)}[command]  # fmt: skip
    return [*args, "--runs-dir", tmp_path / "runs"]


@pytest.mark.parametrize("command", ["plan", "report", "claims", "figures", "run"])
@pytest.mark.parametrize("where", ["a-file", "under-a-file", "empty"])
def test_every_command_checks_its_runs_dir(tmp_path, capsys, command, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    runs = {"a-file": blocker, "under-a-file": blocker / "runs", "empty": ""}[where]
    args = _folder_args(tmp_path, command)
    args[-1] = runs
    if command in ("run", "report", "figures"):
        args += ["--out", tmp_path / "out"]
    says = "empty path" if where == "empty" else "is not a directory"
    assert_refused(capsys, *args, says=says, nothing_under=tmp_path)


@pytest.mark.parametrize(
    ("command", "option"),
    [("report", "--out"), ("figures", "--out"), ("figures", "--data-root"), ("run", "--out"),
     ("run", "--data-root")],
)  # fmt: skip
def test_out_and_data_root_are_checked_as_run_checks_them(tmp_path, capsys, command, option):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = [*_folder_args(tmp_path, command), option, blocker / "sub"]
    assert_refused(capsys, *args, says="is not a directory", nothing_under=tmp_path)
    assert_refused(capsys, *args[:-1], "", says="empty path", nothing_under=tmp_path)


def test_denoiser_weights_of_the_wrong_shape_leave_nothing(tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, weights)
    assert_refused(capsys, *_run(tmp_path, "adversarial", "--denoiser-weights", weights),
                   says="--denoiser-weights do not fit", nothing_under=tmp_path)  # fmt: skip
    assert not (tmp_path / "runs").exists()


def test_failed_dataset_download_leaves_no_folder(tmp_path, capsys, monkeypatch):
    """torchvision makes <data-root>/MNIST/raw before it downloads; offline, the
    download fails, and the folder it made goes again."""
    from urllib.error import URLError

    import torchvision.datasets.mnist

    def offline(url, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    data = tmp_path / "data"
    data.mkdir()
    assert_refused(capsys, "run", "table1", "--data-root", data, "--runs-dir", tmp_path / "runs",
                   "--out", tmp_path / "out", says="could not be downloaded",
                   nothing_under=tmp_path)  # fmt: skip
    assert list(data.iterdir()) == []
