import csv
import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import harness.tasks.denoising.engine
from harness.cli import main
from harness.core.errors import UserError
from harness.data.images import LoadedImage, coco_subset, iter_test_images
from harness.store.evalcache import ImageResultCache
from harness.tables.paper import TABLE4, TABLE5
from harness.tasks.denoising.engine import evaluate_denoiser, load_denoise_data

T4_ROWS = ["Baseline", "Baseline +1FP", "Baseline +2FP"]


def _csv(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("denoise")
    args = ["run", "table4", "table5", "--profile", "smoke", "--runs-dir", str(root / "runs"),
            "--out", str(root / "out"), "--data-root", str(root / "data")]  # fmt: skip
    assert main(args) == 0
    return root


def test_table4_smoke_report(smoke):
    rows = _csv(smoke / "out" / "smoke" / "table4.csv")
    assert [r["row"] for r in rows] == T4_ROWS
    for sigma in TABLE4.sigmas:
        for prefix in ("psnr", "noisy_psnr", "ssim", "paper_psnr"):
            assert f"{prefix}_sigma{sigma}" in rows[0]
        assert all(float(r[f"psnr_sigma{sigma}"]) > 0 for r in rows)
    assert rows[2]["paper_psnr_sigma20"] == "31.68"
    assert len(list((smoke / "runs" / "table4" / "smoke").glob("*seed0-*.json"))) >= 15
    text = (smoke / "out" / "smoke" / "table4.md").read_text()
    assert "Smoke run" in text and "| PSNR σ=20 " in text and "Noisy PSNR" in text
    assert "Units: PSNR: dB" in text


def test_table5_smoke_report(smoke):
    rows = _csv(smoke / "out" / "smoke" / "table5.csv")
    assert [r["variant"] for r in rows] == list(TABLE5.rows)
    for column in ("psnr_sigma50", "paper_psnr_sigma50", "params", "params_M_paper_conv",
                   "paper_params_M_paper_conv", "flops_paper_conv", "train_time_s", "test_time_s",
                   "paper_train_time_s"):  # fmt: skip
        assert column in rows[0], column
    assert int(rows[1]["params"]) < int(rows[0]["params"])
    text = (smoke / "out" / "smoke" / "table5.md").read_text()
    assert "CIFAR-10-layout fixture" in text and "count conv kernel weights only" in text


def test_noisy_input_is_the_same_for_every_row(smoke):
    records = [
        json.loads(p.read_text())
        for p in (smoke / "runs" / "table4" / "smoke").glob("*seed0-*.json")
    ]
    by_sigma = {}
    for r in records:
        if r.get("status") == "complete":
            by_sigma.setdefault(r["config"]["sigma"], set()).add(
                round(r["metrics"]["noisy_psnr"], 9)
            )
    assert len(by_sigma) == 5 and all(len(v) == 1 for v in by_sigma.values())


def test_a_cell_killed_while_testing_resumes_without_retraining(smoke, monkeypatch, capsys):
    folder = smoke / "runs" / "table4" / "smoke"
    record = next(
        p for p in sorted(folder.glob("denoiser.fp2-seed0-*.json")) if ".train." not in p.name
    )
    before = json.loads(record.read_text())["metrics"]["psnr"]
    record.unlink()  # as if killed after training and testing, before the record
    monkeypatch.setattr(
        harness.tasks.denoising.engine, "train_denoiser", lambda *a, **k: pytest.fail("retrained")
    )
    args = ["run", "table4", "--profile", "smoke", "--runs-dir", str(smoke / "runs"),
            "--out", str(smoke / "out"), "--data-root", str(smoke / "data")]  # fmt: skip
    assert main(args) == 0
    assert "14 already done, 1 to run" in capsys.readouterr().out
    assert json.loads(record.read_text())["metrics"]["psnr"] == pytest.approx(before)


class CountingModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += len(x)
        return x.clamp(0, 1)


def _images(n, side=12):
    gen = torch.Generator().manual_seed(3)
    return [
        LoadedImage(
            f"im{i}", torch.randint(0, 256, (3, side, side), generator=gen, dtype=torch.uint8)
        )
        for i in range(n)
    ]


def test_per_image_cache_resumes_a_killed_evaluation(tmp_path):
    images = _images(5)
    cache = ImageResultCache(tmp_path / "cell.images.jsonl")

    def killed_after_three():
        yield from images[:3]
        raise KeyboardInterrupt

    model = CountingModel()
    with pytest.raises(KeyboardInterrupt):
        evaluate_denoiser(
            model,
            killed_after_three(),
            5,
            sigma=25,
            seed=0,
            device=torch.device("cpu"),
            cache=cache,
        )
    assert model.calls == 3
    with (tmp_path / "cell.images.jsonl").open("a") as handle:
        handle.write('{"image": "im3", "psn')  # a line cut short by the kill
    resumed = CountingModel()
    cache = ImageResultCache(tmp_path / "cell.images.jsonl")
    metrics = evaluate_denoiser(
        resumed, iter(images), 5, sigma=25, seed=0, device=torch.device("cpu"), cache=cache
    )
    assert resumed.calls == 2 and metrics["n_images"] == 5
    lines = [
        json.loads(line)
        for line in (tmp_path / "cell.images.jsonl").read_text().splitlines()
        if line.endswith("}")
    ]
    assert sorted(e["image"] for e in lines) == [f"im{i}" for i in range(5)]
    # clamping the noisy input is all this "model" does: PSNR can only improve on the input's
    assert metrics["psnr"] >= metrics["noisy_psnr"] - 1e-9


def _write_images(folder):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (21, 13, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(folder / "c.bmp")
    Image.fromarray(rng.integers(0, 256, (10, 10), dtype=np.uint8)).save(folder / "d_grey.png")


def test_image_folder_reads_full_size_and_converts_grey(tmp_path):
    _write_images(tmp_path / "imgs")
    count, images = iter_test_images("bsd500", tmp_path, tmp_path / "imgs")
    images = list(images)
    assert count == 4 and [im.id for im in images] == ["a", "b", "c", "d_grey"]
    assert images[0].pixels.shape == (3, 21, 13) and images[2].pixels.shape == (3, 9, 11)
    assert images[3].pixels.shape == (3, 10, 10) and "converted to RGB" in images[3].note
    assert all(im.pixels.dtype == torch.uint8 for im in images)


def test_unreadable_image_is_named(tmp_path):
    _write_images(tmp_path / "imgs")
    (tmp_path / "imgs" / "e_broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"e_broken\.png"):
        list(iter_test_images("bsd500", tmp_path, tmp_path / "imgs")[1])


def test_missing_test_set_says_where_to_put_it(tmp_path):
    with pytest.raises(UserError, match="BSR/BSDS500/data/images/test") as err:
        iter_test_images("bsd200", tmp_path)
    assert "\n" not in str(err.value)


def test_coco_subset_is_a_seeded_sample_resized(tmp_path):
    folder = tmp_path / "coco" / "train2017"
    folder.mkdir(parents=True)
    for i in range(12):
        Image.fromarray(np.full((20 + i, 30, 3), i * 20, dtype=np.uint8)).save(
            folder / f"{i:012d}.jpg"
        )
    a = coco_subset(tmp_path / "coco", 5, size=16, seed=0)
    assert a.shape == (5, 3, 16, 16) and a.dtype == torch.uint8
    assert torch.equal(a, coco_subset(tmp_path / "coco", 5, size=16, seed=0))
    assert not torch.equal(a, coco_subset(tmp_path / "coco", 5, size=16, seed=1))
    with pytest.raises(UserError, match="12 images, 15 needed"):
        coco_subset(tmp_path / "coco", 15)


def test_test_dir_replaces_the_test_set(tmp_path):
    _write_images(tmp_path / "mine")
    protocol = replace(TABLE4.protocol("smoke"), test_crop=0)  # the images are smaller than 32
    data = load_denoise_data(protocol, tmp_path, download=False, device=torch.device("cpu"),
                             test_dir=tmp_path / "mine")  # fmt: skip
    test = data.test(None)
    assert test.count == 4 and str(tmp_path / "mine") in data.description
    assert [im.id for im in test.walk()] == ["a", "b", "c", "d_grey"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "table1", "--profile", "smoke", "--test-dir", "."],
            "--test-dir applies to denoising tables",
        ),
        (
            ["run", "table4", "--profile", "smoke", "--test-dir", "/nonexistent"],
            "is not a directory",
        ),
    ],
)
def test_bad_test_dir(args, message, tmp_path, capsys):
    assert main([*args, "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
