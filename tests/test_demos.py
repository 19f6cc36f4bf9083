"""The demo profiles: real images for Tables 2-3, denoisers trained over a range of noise
levels, and the one line that says what a demo should show."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import harness.tasks.denoising.engine
from harness.core.runtime import resolve_device
from harness.data.classification import load_classification
from harness.render.report import build_report, render_markdown
from harness.run.runner import run_table
from harness.store.records import RunStore
from harness.tables.cells import cell_config
from harness.tables.paper import TABLE4, TABLE7, TABLES
from harness.tasks.denoising.engine import _noise_levels, training_key


def test_mnist_rgb32_is_the_real_digits_padded_to_colour():
    digits = load_classification("mnist5k", "unused", train_limit=50, test_limit=20)
    rgb = load_classification("mnist5k_rgb32", "unused", train_limit=50, test_limit=20)
    assert rgb.train_x.shape == (50, 3, 32, 32) and rgb.test_x.shape == (20, 3, 32, 32)
    for channel in range(3):
        assert torch.equal(rgb.train_x[:, channel, 2:30, 2:30], digits.train_x[:, 0])
    assert int(rgb.train_x[:, :, :2].max()) == 0 and int(rgb.test_x[..., 30:].max()) == 0
    assert torch.equal(rgb.test_y, digits.test_y)
    assert "not CIFAR-10" in rgb.description and len(rgb.mean) == len(rgb.std) == 3


def test_vgg_demos_train_on_real_digits_and_say_so():
    for name in ("table2", "table3"):
        demo = TABLES[name].protocol("demo")
        assert demo.dataset == "mnist5k_rgb32" and not demo.hflip
        assert "NOT CIFAR-10" in demo.choices


def test_noise_levels_are_drawn_per_image_within_the_range():
    gen = torch.Generator().manual_seed(0)
    blind = replace(TABLE4.protocol("smoke"), train_sigmas=(10, 60))
    levels = _noise_levels(blind, 25, 4000, gen, torch.device("cpu"))
    assert levels.shape == (4000, 1, 1, 1)
    assert 10 <= float(levels.min()) < 11 and 59 < float(levels.max()) <= 60
    assert _noise_levels(TABLE4.protocol("smoke"), 25, 4, gen, torch.device("cpu")) == 25


def test_a_model_trained_over_noise_levels_has_one_training_key():
    spec = replace(
        TABLE4, protocols={"smoke": replace(TABLE4.protocol("smoke"), train_sigmas=(10, 60))}
    )
    keys = {training_key(cell_config(spec, "denoiser.fp2", "smoke", 0, sigma), spec.protocol("smoke"), "d")
            for sigma in spec.sigmas}  # fmt: skip
    assert len(keys) == 1
    per_sigma = {training_key(cell_config(TABLE4, "denoiser.fp2", "smoke", 0, sigma),
                              TABLE4.protocol("smoke"), "d") for sigma in TABLE4.sigmas}  # fmt: skip
    assert len(per_sigma) == len(TABLE4.sigmas)


def test_blind_training_trains_each_row_once_and_tests_every_sigma(tmp_path):
    protocol = replace(TABLE4.protocol("smoke"), train_sigmas=(10, 60))
    spec = replace(TABLE4, rows=("denoiser.fp2",), sigmas=(20, 50), protocols={"smoke": protocol},
                   expect={"smoke": "one trained model, two noise levels"})  # fmt: skip
    store = RunStore(tmp_path / "runs")
    lines: list[str] = []
    run_table(spec, profile="smoke", seeds=1, device=resolve_device("cpu"), store=store,
              data_root=tmp_path / "data", log=lines.append)  # fmt: skip
    records = sorted(store.records("table4", "smoke"), key=lambda r: r["config"]["sigma"])
    assert [r["config"]["sigma"] for r in records] == [20, 50]
    assert not any("reused" in n for n in records[0]["notes"])
    assert any("and reused:" in n for n in records[1]["notes"])
    assert records[0]["metrics"]["noisy_psnr"] > records[1]["metrics"]["noisy_psnr"]
    text = render_markdown(build_report(spec, "smoke", store))
    assert "What to expect: one trained model, two noise levels" in text


def test_force_retrains_a_shared_model_once_per_run(tmp_path, monkeypatch):
    """--force reruns every cell, but the cells that share one model (a row's noise levels
    under blind training) train it once in that run, not once each."""
    protocol = replace(TABLE4.protocol("smoke"), train_sigmas=(10, 60))
    spec = replace(
        TABLE4, rows=("denoiser.fp2",), sigmas=(20, 30, 50), protocols={"smoke": protocol}
    )
    store = RunStore(tmp_path / "runs")
    kwargs = dict(profile="smoke", seeds=1, device=resolve_device("cpu"), store=store,
                  data_root=tmp_path / "data", log=lambda _: None)  # fmt: skip
    run_table(spec, **kwargs)
    calls = []
    train = harness.tasks.denoising.engine.train_denoiser
    monkeypatch.setattr(
        harness.tasks.denoising.engine,
        "train_denoiser",
        lambda *a, **k: calls.append(1) or train(*a, **k),
    )
    run_table(spec, **kwargs, force=True)
    assert len(calls) == 1
    records = list(store.records("table4", "smoke"))
    assert len(records) == 3 and sum("and reused:" in " ".join(r["notes"]) for r in records) == 2


def test_every_demo_says_what_to_expect():
    for spec in TABLES.values():
        if "demo" in spec.protocols:
            assert spec.expect.get("demo"), spec.name


def _demo_records(spec, tmp_path) -> list[dict]:
    store = RunStore(tmp_path / "runs")
    run_table(spec, profile="demo", seeds=1, device=resolve_device("cpu"), store=store,
              data_root=Path(tmp_path / "data"), log=lambda _: None)  # fmt: skip
    records = list(store.records(spec.name, "demo"))
    assert len(records) == len(spec.rows) * len(spec.sigmas or (None,))
    return records


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "row"),
    [(TABLE4, "denoiser.fp2"), (TABLE7, "dncnn.color20")],
    ids=["table4-fp2", "table7-dncnn"],
)
def test_denoising_demo_rows_denoise(tmp_path, spec, row):
    """A demo protocol at one noise level, on the row every denoising demo shares
    (Baseline+2FP; the other rows of Table 4 cost several times more) and on DnCNN, which
    returned its input unchanged before its demo started it as the identity: both well
    above their noisy input."""
    (record,) = _demo_records(replace(spec, rows=(row,), sigmas=(30,)), tmp_path)
    gain = record["metrics"]["psnr"] - record["metrics"]["noisy_psnr"]
    assert gain > 3, (row, gain)


@pytest.mark.slow
def test_vgg_demo_baseline_learns_the_digits(tmp_path):
    """Table 2's demo budget (120 steps) takes VGG-16 far above chance (0.1) on real digits;
    at the paper's lr 0.05 it stayed near chance."""
    (record,) = _demo_records(replace(TABLES["table2"], rows=("vgg16.baseline",)), tmp_path)
    assert record["metrics"]["accuracy"] > 0.6
