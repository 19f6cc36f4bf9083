"""FGSM against small random-weight models on fixture JPEGs; offline weight handling."""

import csv
import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torchvision import datasets, transforms

from harness.cli import main
from harness.core.errors import UserError
from harness.tasks.adversarial import engine as adversarial
from harness.tasks.adversarial.engine import Normalized, attack_and_denoise, fgsm, resnet101
from tests.fixtures import write_image_folder


@pytest.fixture
def images(tmp_path):
    root = write_image_folder(tmp_path, n_val=3)
    folder = datasets.ImageFolder(str(root / "val"), transforms.ToTensor())
    x, y = zip(*(folder[i] for i in range(len(folder))), strict=True)
    return torch.stack(x), torch.tensor(y)


def _small_classifier() -> nn.Module:
    torch.manual_seed(0)
    return Normalized(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)))


def test_fgsm_raises_the_loss_within_epsilon(images):
    x, y = images
    model = _small_classifier()
    model(x)  # materialise the lazy layer
    adv = fgsm(model, x, y, epsilon=4 / 255)
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)
    assert (adv - x).abs().max() <= 4 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def test_attack_and_denoise_counts_three_accuracies(images):
    model = _small_classifier()
    model(images[0])
    result = attack_and_denoise(model, nn.Identity(), [images], 8 / 255, torch.device("cpu"))
    assert set(result) == {"top1_clean", "top1_adversarial", "top1_denoised"}
    assert result["top1_denoised"] == result["top1_adversarial"]  # identity "denoiser"
    assert all(0 <= v <= 1 for v in result.values())


def test_missing_resnet101_weights_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match="ResNet-101 ImageNet weights are not at") as err:
        resnet101(pretrained=True)
    assert "\n" not in str(err.value)


def _run_args(tmp_path, *extra):
    return ["run", "adversarial", "--device", "cpu", "--data-root", str(tmp_path / "data"),
            "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), *extra]  # fmt: skip


def test_adversarial_table_smoke_says_random_weights(tmp_path):
    write_image_folder(tmp_path / "data")
    assert main(_run_args(tmp_path, "--profile", "smoke")) == 0
    (record,) = (tmp_path / "runs" / "adversarial" / "smoke").glob("*.json")
    notes = json.loads(record.read_text())["notes"]
    assert any("RANDOM classifier weights" in n for n in notes)
    assert any("RANDOM denoiser weights" in n for n in notes)
    (row,) = csv.DictReader((tmp_path / "out" / "smoke" / "adversarial.csv").open())
    assert row["row"] == "ResNet-101 + FGSM"
    assert all(0 <= float(row[c]) <= 1 for c in ("top1_clean", "top1_adversarial", "top1_denoised"))
    assert float(row["paper_top1_adversarial"]) == pytest.approx(0.2718)
    assert float(row["paper_top1_denoised"]) == pytest.approx(0.3605)
    markdown = (tmp_path / "out" / "smoke" / "adversarial.md").read_text()
    assert "RANDOM classifier weights" in markdown and "RANDOM denoiser weights" in markdown


def test_paper_without_resnet101_weights_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # empty: nothing cached
    assert main(_run_args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ResNet-101 ImageNet weights are not at" in err


def test_paper_without_denoiser_weights_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(adversarial, "imagenet_weights", dict)  # as if cached
    assert main(_run_args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --denoiser-weights PATH" in err


def test_another_denoiser_weights_file_is_another_cell(tmp_path, capsys):
    from harness.tables.paper import TABLES
    from registry import create_model

    protocol = TABLES["adversarial"].protocol("smoke")
    state = create_model(protocol.denoiser, **dict(protocol.denoiser_kwargs)).state_dict()
    torch.save(state, tmp_path / "a.pt")
    state = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, tmp_path / "b.pt")
    write_image_folder(tmp_path / "data")
    for weights, ran in (("a.pt", 1), ("a.pt", 0), ("b.pt", 1)):
        args = _run_args(
            tmp_path, "--profile", "smoke", "--denoiser-weights", str(tmp_path / weights)
        )
        assert main(args) == 0
        assert f"{1 - ran} already done, {ran} to run" in capsys.readouterr().out
    (row,) = csv.DictReader((tmp_path / "out" / "smoke" / "adversarial.csv").open())
    assert row["n_seeds"] == "1"  # the newest record stands for the row, not a mix of both
